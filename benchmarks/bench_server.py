"""Keep-alive throughput and latency of rmodelpack's server next to the reference's plain Plumber.

Prints requests/s, p50 and p99 at 8 keep-alive connections (wrk, a few seconds per run) for the
plain-Plumber baseline (one process, POST /score, plumber::pr_run) and for rmodelpack with
workers = 1 and 2, all measured in this run, plus the ratios and the predict-only ceiling.
Not a test: the figures depend on the machine. Usage: .venv/bin/python benchmarks/bench_server.py
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from common import ONE_ROW, free_port, predict_seconds, start_baseline, start_rmodelpack, train, wrk


def row(label: str, result: dict[str, float], baseline_rps: float) -> str:
    return (
        f"{label:<34} {result['rps']:>8.0f} {result['p50_ms']:>8.1f} {result['p99_ms']:>8.1f}"
        f" {result['rps'] / baseline_rps:>7.1f}x {int(result['non_2xx']):>6}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run")
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
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
                results[f"rmodelpack workers={workers} /score"] = wrk(
                    server.url("/score"), body, args.connections, args.seconds
                )
                results[f"rmodelpack workers={workers} /predict"] = wrk(
                    server.url("/predict"), ONE_ROW, args.connections, args.seconds
                )
            finally:
                server.terminate()

    base = results["baseline keep-alive"]["rps"]
    ceiling = cores / predict_s
    print(
        f"\ncores={cores}  predict() one row={predict_s * 1000:.2f} ms  "
        f"predict-only ceiling={ceiling:.0f} req/s  connections={args.connections}  "
        f"wrk run={args.seconds}s"
    )
    print(f"{'server':<34} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'vs base':>8} {'non2xx':>6}")
    for label, result in results.items():
        print(row(label, result, base))
    best = results[f"rmodelpack workers={min(cores, 2)} /score"]
    print(
        f"\nworkers=cores keep-alive: {best['rps'] / ceiling:.0%} of the predict-only ceiling "
        f"(target >= 50%), {best['rps'] / base:.1f}x the baseline (target >= 6x), "
        f"p99 {best['p99_ms']:.1f} ms (target <= 25 ms)"
    )


if __name__ == "__main__":
    main()
