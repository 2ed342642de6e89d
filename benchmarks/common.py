"""Helpers shared by the benchmark scripts: the Boston example, configs, wrk, the baseline."""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))

from runtime.server import NativeServer, start_native_server  # noqa: E402

from rmodelpack.manifest import load_manifest  # noqa: E402
from rmodelpack.render import runtime_config  # noqa: E402

BOSTON_DIR = REPO_ROOT / "examples" / "boston-rf"
BASELINE_DIR = Path(__file__).resolve().parent / "baseline"
ONE_ROW = json.loads((BOSTON_DIR / "requests" / "score.json").read_text())["df"][:1]


def train(ntree: int = 100, output: Path | None = None) -> Path:
    output = output or BOSTON_DIR / "model.rds"
    if not output.exists():
        subprocess.run(
            ["Rscript", "--vanilla", "train.R", str(ntree), str(output)],
            cwd=BOSTON_DIR,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return output


def boston_config(model: Path) -> dict[str, Any]:
    manifest, _ = load_manifest(BOSTON_DIR / "rmodel.yaml")
    return runtime_config(manifest, hashlib.sha256(model.read_bytes()).hexdigest())


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_average() -> str:
    """The 1/5/15-minute load averages: figures taken at a load above ~1 are not comparable."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def start_rmodelpack(
    model: Path,
    workers: int,
    workdir: Path,
    config: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    runtime_dir: Path | None = None,
) -> NativeServer:
    """rmodelpack natively; `env` adds RMP_* overrides (e.g. RMP_BATCHING); `runtime_dir` runs
    another version's rmodelpack/runtime (default: this checkout's)."""
    workdir.mkdir(parents=True, exist_ok=True)
    label = "-".join([str(workers), *(f"{k}={v}" for k, v in sorted((env or {}).items()))])
    if runtime_dir is not None:
        label += f"-{runtime_dir.parent.parent.name}"
    config_path = workdir / f"rmodelpack-{label}.json"
    config_path.write_text(json.dumps(config or boston_config(model), indent=2, sort_keys=True))
    server = start_native_server(
        config_path,
        free_port(),
        env={
            "RMP_MODEL_PATH": str(model),
            "RMP_WORKERS": str(workers),
            "RMP_DRAIN_SECONDS": "0",
            **(env or {}),
        },
        tmpdir=workdir / f"tmp-{label}",
        **({"entrypoint": runtime_dir / "entrypoint.sh"} if runtime_dir else {}),
    )
    server.wait_ready()
    return server


def export_runtime(ref: str, into: Path) -> Path:
    """rmodelpack/runtime as it was at git `ref`, written below `into`; returns its path."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", ref, "rmodelpack/runtime"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "rmodelpack" / "runtime"


def start_baseline(model: Path, port: int) -> subprocess.Popen[bytes]:
    """One plain plumber::pr_run process, as the reference deployment runs it."""
    code = (
        f"plumber::pr_run(plumber::plumb('{BASELINE_DIR / 'plumber.R'}'), "
        f"host = '127.0.0.1', port = {port}, docs = FALSE)"
    )
    process = subprocess.Popen(
        ["Rscript", "--vanilla", "-e", code],
        env={**os.environ, "RMP_BASELINE_MODEL": str(model)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.post(f"http://127.0.0.1:{port}/score", json={"df": ONE_ROW}, timeout=5)
            return process
        except requests.ConnectionError:
            time.sleep(0.2)
    process.kill()
    raise TimeoutError("the baseline plumber server did not start")


def wrk(
    url: str, body: Any, connections: int = 8, seconds: int = 5, close: bool = False
) -> dict[str, float]:
    """Bounded wrk run of POSTs (one wrk thread, so it takes at most one core); returns
    requests/s, p50/p99 ms, non-2xx/socket errors and wrk's own CPU use (cores)."""
    headers = 'wrk.headers["Content-Type"] = "application/json"\n'
    if close:
        headers += 'wrk.headers["Connection"] = "close"\n'
    script = f'wrk.method = "POST"\n{headers}wrk.body = {json.dumps(json.dumps(body))}\n'
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", handle.name]
    try:
        out = subprocess.run(
            [*command, url],
            check=True,
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        ).stdout
    finally:
        os.unlink(handle.name)
    elapsed = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {**parse_wrk(out), "wrk_cpu": cpu / elapsed}


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(max_seconds: float, threshold: float = 1.0) -> str:
    """Waits (at most max_seconds) for the 1-minute load average to drop below threshold."""
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline and float(load_average().split()[0]) >= threshold:
        time.sleep(10)
    return load_average()


def to_ms(text: str | None) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text or "")
    if match is None:
        return float("nan")
    value, unit = match.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(out: str) -> dict[str, float]:
    def find(pattern: str) -> str | None:
        # Anchored patterns (^...) are per line: "87.50%" in the Stdev column is not the p50.
        match = re.search(pattern, out, re.MULTILINE)
        return match.group(1) if match else None

    if find(r"Requests/sec:\s+([\d.]+)") is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    return {
        "rps": float(find(r"Requests/sec:\s+([\d.]+)")),
        "p50_ms": to_ms(find(r"^\s*50%\s+(\S+)$")),
        "p99_ms": to_ms(find(r"^\s*99%\s+(\S+)$")),
        "max_ms": to_ms(find(r"^\s*Latency\s+\S+\s+\S+\s+(\S+)")),
        "non_2xx": float(find(r"Non-2xx or 3xx responses: (\d+)") or 0),
        "socket_errors": float(bool(find(r"(Socket errors)"))),
    }


MALLOC_DEFAULT = re.compile(r'^export (MALLOC_\w+_)="\$\{\1:-(\d+)\}"$', re.MULTILINE)


def runtime_malloc_env() -> dict[str, str]:
    """The glibc malloc settings entrypoint.sh gives every R process of the runtime."""
    entrypoint = REPO_ROOT / "rmodelpack" / "runtime" / "entrypoint.sh"
    return dict(MALLOC_DEFAULT.findall(entrypoint.read_text()))


def predict_seconds(model: Path, repeats: int = 2000, env: dict[str, str] | None = None) -> float:
    """Mean time of one single-row predict() in R: the per-request floor. `env` is added to the
    R process's environment (e.g. runtime_malloc_env())."""
    code = (
        "suppressPackageStartupMessages(library(randomForest));"
        f"m <- readRDS('{model}'); x <- MASS::Boston[1, ];"
        "invisible(predict(m, x));"
        f"s <- system.time(for (i in 1:{repeats}) predict(m, x))[['elapsed']];"
        f"cat(s / {repeats})"
    )
    out = subprocess.run(
        ["Rscript", "--vanilla", "-e", code],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    ).stdout
    return float(out.strip())
