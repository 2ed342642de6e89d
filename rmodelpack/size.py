"""Memory sizing: run a built image, score example rows, measure what it really uses.

This module only measures (and recommends from a measurement). Which worker count to measure
and where the result goes are the pipeline's (``rmodelpack.pipeline.size``); render turns a
stored measurement into memory values.

R models live in memory and every worker holds (a copy-on-write share of) the model, so the pod's
memory request must come from a measurement, not a guess. The image runs once with one worker and
once with N; the container's working set (what the kubelet compares with the limit: cgroup usage
minus inactive page cache) and each process's PSS are read after a warm-up of example requests.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rmodelpack.containers import run_hardened, sigterm_as_interrupt, wait_ready
from rmodelpack.exceptions import BuildError, UsageError

# Headroom over the measured working set: R's heap grows between garbage collections.
REQUEST_MARGIN = 0.3
MEBIBYTE = 1024 * 1024
ROUND_TO_MI = 16
WARMUP_REQUESTS = 100

Progress = Callable[[str], None] | None


@dataclass(frozen=True)
class ProcessMemory:
    pid: int
    command: str
    pss_mib: float
    rss_mib: float


@dataclass(frozen=True)
class Measurement:
    workers: int
    working_set_mib: float
    processes: tuple[ProcessMemory, ...]


@dataclass(frozen=True)
class Sizing:
    model_sha256: str
    image: str
    workers: int
    one_worker: Measurement
    n_workers: Measurement
    request_mib: int
    limit_mib: int

    @property
    def per_extra_worker_mib(self) -> float:
        extra = self.workers - 1
        if extra == 0:
            return 0.0
        return (self.n_workers.working_set_mib - self.one_worker.working_set_mib) / extra

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


def parse_mib(quantity: str) -> float:
    """A Kubernetes memory quantity in MiB (512Mi, 1Gi, 500M, 1073741824)."""
    units = {
        "Ki": 1 / 1024,
        "Mi": 1,
        "Gi": 1024,
        "Ti": 1024**2,
        "k": 1000 / MEBIBYTE,
        "M": 1e6 / MEBIBYTE,
        "G": 1e9 / MEBIBYTE,
        "T": 1e12 / MEBIBYTE,
    }
    for suffix in sorted(units, key=len, reverse=True):
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * units[suffix]
    return float(quantity) / MEBIBYTE


def round_up_mib(value: float) -> int:
    return int(math.ceil(value / ROUND_TO_MI) * ROUND_TO_MI)


def recommend(one: Measurement, many: Measurement) -> tuple[int, int]:
    """(request, limit) in MiB: the working set plus margin; the limit adds one more worker,
    room for a replacement worker to start while a dying one still holds memory."""
    one_worker = max(one.working_set_mib, 1.0)
    request = round_up_mib(many.working_set_mib * (1 + REQUEST_MARGIN))
    return request, round_up_mib(request + one_worker)


# --- measuring a running container ---------------------------------------------------------------


def process_memory(pid: int) -> ProcessMemory | None:
    proc = Path("/proc") / str(pid)
    try:
        rollup = (proc / "smaps_rollup").read_text()
        command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return None
    fields = {}
    for line in rollup.splitlines()[1:]:
        key, _, rest = line.partition(":")
        fields[key.strip()] = float(rest.split()[0]) / 1024 if rest.split() else 0.0
    return ProcessMemory(
        pid, command[:80], round(fields.get("Pss", 0.0), 1), round(fields.get("Rss", 0.0), 1)
    )


def working_set_mib(stats: dict[str, Any]) -> float:
    memory = stats.get("memory_stats", {})
    usage = memory.get("usage", 0)
    details = memory.get("stats", {})
    inactive = details.get("total_inactive_file", details.get("inactive_file", 0))
    return round(max(usage - inactive, 0) / MEBIBYTE, 1)


def _post(url: str, body: bytes) -> int:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def measure(
    client: Any, image: str, workers: int, body: bytes, port: int, on_progress: Progress = None
) -> Measurement:
    container = run_hardened(client, image, port, environment={"RMP_WORKERS": str(workers)})
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/readyz", container)
        statuses = {_post(f"{base}/predict", body) for _ in range(WARMUP_REQUESTS)}
        if statuses != {200}:
            raise UsageError(
                f"the example request did not score (HTTP {sorted(statuses)}); "
                "check input.example against input.columns"
            )
        time.sleep(1.0)  # let the workers flush and go idle, as a pod between bursts
        stats = container.stats(stream=False)
        pids = [int(row[1]) for row in container.top(ps_args="-o pid,pid")["Processes"]]
        processes = tuple(p for p in map(process_memory, pids) if p is not None)
        measured = Measurement(workers, working_set_mib(stats), processes)
        if on_progress:
            on_progress(f"{workers} worker(s): working set {measured.working_set_mib} MiB")
        return measured
    finally:
        container.remove(force=True)


def size_image(
    *,
    image: str,
    model_sha256: str,
    example_body: bytes,
    workers: int,
    port: int,
    client: Any = None,
    on_progress: Progress = None,
) -> Sizing:
    """Measure ``image`` with 1 and ``workers`` workers on 127.0.0.1:``port``. Each container is
    removed when its measurement ends, fails, or is interrupted (Ctrl-C or SIGTERM)."""
    import docker

    try:
        docker_client = client or docker.from_env()
        with sigterm_as_interrupt():
            one = measure(docker_client, image, 1, example_body, port, on_progress)
            many = (
                one
                if workers == 1
                else measure(docker_client, image, workers, example_body, port, on_progress)
            )
    except docker.errors.DockerException as exc:
        raise BuildError(f"docker failed while measuring {image}: {exc}") from exc
    request, limit = recommend(one, many)
    return Sizing(model_sha256, image, workers, one, many, request, limit)
