"""Keep-alive throughput and latency: plain Plumber vs rmodelpack with micro-batching off and on.

In one run, at 1, 8, 32 and 64 keep-alive connections (wrk, one thread, a few seconds each):
the reference's plain Plumber (one process, POST /score, plumber::pr_run), and rmodelpack with
workers = cores and runtime.batching off (RMP_BATCHING=false) and on, on /score and /predict;
the servers run side by side and are measured in turn at each connection count.
Prints req/s, p50, p99 and the slowest request as wrk saw them, nginx's own p99 over the same
requests (from its access log), the share of the predict-only ceiling (cores ÷ one single-row
predict(), the faster of R's malloc defaults and the runtime's settings), the ratio to the
baseline at the same connection count, the R workers' CPU per request, the mean requests per
predict() call (from /metrics), and the load average before and after. wrk corrects its
latencies for coordinated omission: a reply that took S ms on a connection adds samples S - I,
S - 2I, ... (I = the run's mean time per request per connection), the requests a steady client
would have sent meanwhile; nginx's p99 counts each real request once.
`--compare REF` adds rmodelpack as it was at git REF (its rmodelpack/runtime, batching on) to
the same run, e.g. the last version whose scoring routes went through httpuv.
Not a test: the figures depend on the machine. Traffic goes to 127.0.0.1 only; every wrk run is
bounded in time.
Usage: .venv/bin/python benchmarks/bench_server.py [--seconds 4] [--connections 1,8,32,64]
       [--compare REF]
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path

import requests
from common import (
    ONE_ROW,
    cpu_seconds,
    export_runtime,
    free_port,
    load_average,
    predict_seconds,
    runtime_malloc_env,
    start_baseline,
    start_rmodelpack,
    train,
    wait_for_quiet,
    wrk,
)

BATCH_METRIC = re.compile(r"^rmp_batch_requests_(sum|count) (\S+)$", re.MULTILINE)


def batch_totals(server) -> tuple[float, float]:
    """(requests scored in batches, predict() calls) so far, from /metrics."""
    text = requests.get(server.url("/metrics"), timeout=10).text
    found = dict(BATCH_METRIC.findall(text))
    return float(found.get("sum", 0)), float(found.get("count", 0))


# nginx flushes its buffered access log at least once a second (nginx.conf.in).
LOG_FLUSH_SECONDS = 1.2


def nginx_p99_ms(server, path: str, skip: int) -> float:
    """The p99 of nginx's own duration_ms over the access-log lines after the first `skip`."""
    entries = server.access_log()[skip:]
    durations = sorted(e["duration_ms"] for e in entries if e["path"] == path)
    return float(durations[int(len(durations) * 0.99)]) if durations else float("nan")


def measured_run(server, path: str, body, connections: int, seconds: int) -> dict[str, float]:
    """One wrk run, the R workers' CPU meanwhile, the mean batch size and nginx's own p99."""
    workers = list(server.worker_pids().values())
    time.sleep(LOG_FLUSH_SECONDS)
    logged = len(server.access_log())
    cpu_before = sum(map(cpu_seconds, workers))
    sum_before, count_before = batch_totals(server)
    result = wrk(server.url(path), body, connections, seconds)
    result["r_cpu"] = sum(map(cpu_seconds, workers)) - cpu_before
    sum_after, count_after = batch_totals(server)
    calls = count_after - count_before
    result["batch"] = (sum_after - sum_before) / calls if calls else float("nan")
    time.sleep(LOG_FLUSH_SECONDS)
    result["nginx_p99_ms"] = nginx_p99_ms(server, path, logged)
    return result


def run_all(
    model: Path, workers: int, connections: list[int], seconds: int, tmp: Path, compare: str
) -> dict:
    """The servers run side by side (idle while another is measured) and are measured in turn
    at each connection count, so a change in the machine's load hits all of them alike."""
    port = free_port()
    baseline = start_baseline(model, port)
    servers = {}
    variants = [("batching off", "false", None), ("batching on", "true", None)]
    if compare:
        variants.append((f"{compare} batching on", "true", export_runtime(compare, tmp / "ref")))
    try:
        for label, batching, runtime_dir in variants:
            env = {"RMP_BATCHING": batching}
            servers[label] = start_rmodelpack(model, workers, tmp, env=env, runtime_dir=runtime_dir)
            wrk(servers[label].url("/score"), {"df": ONE_ROW}, 8, 1)  # warm-up
        results: dict = {}
        for c in connections:
            url = f"http://127.0.0.1:{port}/score"
            results[("plain Plumber /score", c)] = wrk(url, {"df": ONE_ROW}, c, seconds)
            for path, body in (("/score", {"df": ONE_ROW}), ("/predict", ONE_ROW)):
                for label, server in servers.items():
                    results[(f"{label} {path}", c)] = measured_run(server, path, body, c, seconds)
        return results
    finally:
        baseline.terminate()
        baseline.wait()
        for server in servers.values():
            server.terminate()


def table_row(label: str, c: int, result: dict, ceiling: float, base_rps: float) -> str:
    r_ms = result.get("r_cpu", float("nan")) / (result["rps"] * result["seconds"]) * 1000
    return (
        f"| {label} | {c} | {result['rps']:.0f} | {result['p50_ms']:.1f} | {result['p99_ms']:.1f}"
        f" | {result.get('nginx_p99_ms', float('nan')):.0f} | {result['max_ms']:.0f}"
        f" | {result['rps'] / ceiling:.0%} | {result['rps'] / base_rps:.1f}x"
        f" | {int(result['non_2xx'])} | {r_ms:.2f} | {result.get('batch', float('nan')):.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=4, help="length of each wrk run")
    parser.add_argument("--connections", default="1,8,32,64")
    parser.add_argument("--compare", default="", help="also run rmodelpack as at this git ref")
    parser.add_argument(
        "--wait-quiet", type=float, default=0, help="wait up to this long for load < 1 first"
    )
    args = parser.parse_args()
    connections = [int(c) for c in args.connections.split(",")]
    load_before = wait_for_quiet(args.wait_quiet) if args.wait_quiet else load_average()
    model = train()
    cores = os.cpu_count() or 1
    workers = cores
    # R's defaults, and the runtime's malloc settings (cheaper for predict(), so they give the
    # higher ceiling): the faster of the two is the floor.
    predict_default_s = predict_seconds(model)
    predict_runtime_s = predict_seconds(model, env=runtime_malloc_env())
    predict_s = min(predict_default_s, predict_runtime_s)
    ceiling = cores / predict_s

    with tempfile.TemporaryDirectory(prefix="rmp-bench-") as tmp:
        results = run_all(model, workers, connections, args.seconds, Path(tmp), args.compare)

    print(
        f"\nload average before: {load_before}  after: {load_average()}\n"
        f"cores={cores}  workers={workers}  predict() one row={predict_s * 1000:.2f} ms "
        f"(R's malloc defaults {predict_default_s * 1000:.2f}, the runtime's "
        f"{predict_runtime_s * 1000:.2f})  "
        f"predict-only ceiling={ceiling:.0f} req/s  wrk run={args.seconds}s (1 thread)\n"
    )
    print(
        "| server | conns | req/s | p50 ms | p99 ms | nginx p99 ms | max ms | of ceiling"
        " | vs baseline | non-2xx | R CPU ms/req | req per predict() |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for c in connections:
        base_rps = results[("plain Plumber /score", c)]["rps"]
        for (label, conns), result in results.items():
            if conns == c:
                row = {**result, "seconds": args.seconds}
                print(table_row(label, c, row, ceiling, base_rps))


if __name__ == "__main__":
    main()
