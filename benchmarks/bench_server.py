"""Keep-alive throughput and latency of rmodelpack's server next to the reference's plain Plumber.

Prints requests/s, p50 and p99 at 8 keep-alive connections (wrk, one thread, a few seconds per
run) for the plain-Plumber baseline (one process, POST /score, plumber::pr_run) and for
rmodelpack with workers = 1 and 2, all measured in this run, plus the ratios, the predict-only
ceiling, the load average, and where the CPU went during each rmodelpack run (wrk, nginx, the R
workers; in cores). Not a test: the figures depend on the machine.
Usage: .venv/bin/python benchmarks/bench_server.py [--seconds 5] [--wait-quiet 600]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from common import (
    ONE_ROW,
    cpu_seconds,
    free_port,
    load_average,
    predict_seconds,
    start_baseline,
    start_rmodelpack,
    train,
    wait_for_quiet,
    wrk,
)


def row(label: str, result: dict[str, float], baseline_rps: float) -> str:
    return (
        f"{label:<34} {result['rps']:>8.0f} {result['p50_ms']:>8.1f} {result['p99_ms']:>8.1f}"
        f" {result['rps'] / baseline_rps:>7.1f}x {int(result['non_2xx']):>6}"
        f" {result['wrk_cpu']:>5.2f} {cpu_text(result)}"
    )


def cpu_text(result: dict[str, float]) -> str:
    if "r_cpu" not in result:
        return ""
    return f"{result['nginx_cpu']:>5.2f} {result['r_cpu']:>5.2f}"


def server_pids(server) -> dict[str, list[int]]:
    nginx_master = int((server.run_dir / "nginx.pid").read_text())
    children = Path(f"/proc/{nginx_master}/task/{nginx_master}/children").read_text().split()
    return {
        "nginx": [nginx_master, *map(int, children)],
        "r": list(server.worker_pids().values()),
    }


def measured_run(server, path: str, body, args) -> dict[str, float]:
    """One wrk run plus the CPU (in cores) nginx and the R workers used meanwhile."""
    pids = server_pids(server)
    before = {role: sum(map(cpu_seconds, group)) for role, group in pids.items()}
    result = wrk(server.url(path), body, args.connections, args.seconds)
    for role, group in pids.items():
        used = sum(map(cpu_seconds, group)) - before[role]
        result[f"{role}_cpu"] = used / args.seconds
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--wait-quiet", type=float, default=0, help="wait up to this long for load < 1 first"
    )
    args = parser.parse_args()
    load_before = wait_for_quiet(args.wait_quiet) if args.wait_quiet else load_average()
    model = train()
    body = {"df": ONE_ROW}
    cores = os.cpu_count() or 1
    predict_s = predict_seconds(model)
    results: dict[str, dict[str, float]] = {}

    port = free_port()
    baseline = start_baseline(model, port)
    try:
        url = f"http://127.0.0.1:{port}/score"
        results["baseline keep-alive"] = wrk(url, body, args.connections, args.seconds)
        results["baseline Connection: close"] = wrk(
            url, body, args.connections, args.seconds, close=True
        )
    finally:
        baseline.terminate()
        baseline.wait()

    with tempfile.TemporaryDirectory(prefix="rmp-bench-") as tmp:
        for workers in (1, 2):
            server = start_rmodelpack(model, workers, Path(tmp))
            try:
                wrk(server.url("/score"), body, args.connections, 1)  # warm-up
                results[f"rmodelpack workers={workers} /score"] = measured_run(
                    server, "/score", body, args
                )
                results[f"rmodelpack workers={workers} /predict"] = measured_run(
                    server, "/predict", ONE_ROW, args
                )
            finally:
                server.terminate()

    base = results["baseline keep-alive"]["rps"]
    ceiling = cores / predict_s
    print(
        f"\nload average before: {load_before}  after: {load_average()}\n"
        f"cores={cores}  predict() one row={predict_s * 1000:.2f} ms  "
        f"predict-only ceiling={ceiling:.0f} req/s  connections={args.connections}  "
        f"wrk run={args.seconds}s (1 thread)"
    )
    print(
        f"{'server':<34} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'vs base':>8} {'non2xx':>6}"
        f" {'CPU: wrk':>5} {'nginx':>5} {'R':>5}"
    )
    for label, result in results.items():
        print(row(label, result, base))
    best = results[f"rmodelpack workers={min(cores, 2)} /score"]
    print(
        f"\nworkers=cores keep-alive: {best['rps'] / ceiling:.0%} of the predict-only ceiling "
        f"(target >= 50%), {best['rps'] / base:.1f}x the baseline (target >= 6x), "
        f"p99 {best['p99_ms']:.1f} ms (target <= 25 ms); R used {best['r_cpu']:.2f} of "
        f"{cores} cores, {best['r_cpu'] / best['rps'] * 1000:.2f} ms of R CPU per request"
    )


if __name__ == "__main__":
    main()
