"""R's garbage collector and the p99 tail: default heap vs larger initial heaps / faster growth.

Starts rmodelpack natively once per setting (workers = cores, batching on, side by side) with
R's start-up memory settings (?Memory: R_NSIZE, R_VSIZE, R_GC_MEM_GROW) in its environment, and
measures each in turn, alternating, at 8 keep-alive connections on /predict and /score: req/s,
p50, p99, the R workers' CPU per request (/proc/PID/stat), the garbage collections the workers
ran meanwhile (by level) and their RSS (VmRSS after the run, VmHWM peak).
The collections are counted with gcinfo(TRUE): the entrypoint's `Rscript` is a small wrapper
(first on PATH, in a temp dir) that starts R with a site profile calling gcinfo(TRUE) instead of
--vanilla, so every setting pays the same few lines on stderr per collection.
Not a test. Traffic goes to 127.0.0.1 only; every wrk run is bounded in time.
Usage: .venv/bin/python benchmarks/bench_gc.py [--seconds 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import tempfile
from pathlib import Path

from common import ONE_ROW, cpu_seconds, load_average, start_rmodelpack, train, wrk

SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "R_GC_MEM_GROW=3": {"R_GC_MEM_GROW": "3"},
    "R_VSIZE=64M": {"R_VSIZE": "64M"},
    "R_NSIZE=2M R_VSIZE=64M": {"R_NSIZE": "2M", "R_VSIZE": "64M"},
}
ROUTES = {"/predict": ONE_ROW, "/score": {"df": ONE_ROW}}
# gcinfo(TRUE) prints "Garbage collection 12 = 8+2+2 (level 0) ..." on each collection.
GC_LINE = re.compile(r"^Garbage collection \d+ = \d+\+\d+\+\d+ \(level (\d)\)", re.MULTILINE)


def gcinfo_rscript(directory: Path) -> Path:
    """A bin dir whose Rscript is the real one with gcinfo(TRUE) in a site profile."""
    real = shutil.which("Rscript")
    assert real, "Rscript is not on PATH"
    (directory / "gcinfo.R").write_text("invisible(gcinfo(TRUE))\n")
    script = directory / "Rscript"
    script.write_text(
        "#!/bin/sh\n"
        f'export R_PROFILE="{directory / "gcinfo.R"}"\n'
        'if [ "$1" = "--vanilla" ]; then shift; fi\n'
        f'exec "{real}" --no-environ --no-init-file --no-save --no-restore "$@"\n'
    )
    script.chmod(0o755)
    return directory


def status_kb(pid: int, field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(match.group(1)) if match else 0


def gc_levels(server) -> list[int]:
    """Collections the server's R processes have run so far, by level."""
    text = server.stderr_path.read_text(errors="replace")
    levels = [0, 0, 0]
    for level in GC_LINE.findall(text):
        levels[int(level)] += 1
    return levels


def measured_run(server, path: str, body, seconds: int) -> dict[str, float]:
    workers = list(server.worker_pids().values())
    cpu_before = sum(map(cpu_seconds, workers))
    gc_before = gc_levels(server)
    result = wrk(server.url(path), body, 8, seconds)
    requests = result["rps"] * seconds
    gc_after = gc_levels(server)
    result["cpu_ms"] = (sum(map(cpu_seconds, workers)) - cpu_before) / requests * 1000
    for level in range(3):
        result[f"gc{level}_per_1k"] = (gc_after[level] - gc_before[level]) / requests * 1000
    result["rss_mb"] = sum(status_kb(p, "VmRSS") for p in workers) / len(workers) / 1024
    result["hwm_mb"] = max(status_kb(p, "VmHWM") for p in workers) / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=4, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per setting")
    args = parser.parse_args()
    load_before = load_average()
    model = train()
    workers = os.cpu_count() or 1
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="rmp-bench-gc-") as tmp:
        # Inherited by the entrypoint (start_native_server copies os.environ).
        os.environ["PATH"] = f"{gcinfo_rscript(Path(tmp))}:{os.environ['PATH']}"
        servers = {}
        try:
            for label, env in SETTINGS.items():
                workdir = Path(tmp) / re.sub(r"\W+", "_", label)
                servers[label] = start_rmodelpack(model, workers, workdir, env=env)
                wrk(servers[label].url("/predict"), ONE_ROW, 8, 1)  # warm-up
            for _ in range(args.rounds):
                for path, body in ROUTES.items():
                    for label, server in servers.items():
                        run = measured_run(server, path, body, args.seconds)
                        results.setdefault((label, path), []).append(run)
        finally:
            for server in servers.values():
                server.terminate()
    print(
        f"\nload average before: {load_before}  after: {load_average()}\n"
        f"workers={workers}  8 connections, batching on, {args.rounds} alternating rounds of"
        f" {args.seconds}s; medians over the rounds, p99 as min-max\n"
    )
    print(
        "| setting | route | req/s | p50 ms | p99 ms (min-max) | R CPU ms/req"
        " | GCs per 1k req (level 0/1/2) | worker RSS MB | peak RSS MB |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (label, path), runs in results.items():
        med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        p99s = [r["p99_ms"] for r in runs]
        print(
            f"| {label} | {path} | {med['rps']:.0f} | {med['p50_ms']:.1f}"
            f" | {med['p99_ms']:.1f} ({min(p99s):.0f}-{max(p99s):.0f}) | {med['cpu_ms']:.2f}"
            f" | {med['gc0_per_1k']:.1f}/{med['gc1_per_1k']:.1f}/{med['gc2_per_1k']:.2f}"
            f" | {med['rss_mb']:.0f} | {max(r['hwm_mb'] for r in runs):.0f} |"
        )


if __name__ == "__main__":
    main()
