"""One request's latency with 1 vs 2 threads per worker (runtime.threads), ranger example.

Threads per worker trade concurrency for latency: a worker with 2 threads answers one large
request faster, but with workers = cores it competes with the other workers for the same cores.
Prints the median and p90 latency of one 1000-row /predict request, sent sequentially, with one
worker and RMP_THREADS = 1 and 2. A benchmark, not a test: it reports, it never fails.

    .venv/bin/python benchmarks/bench_threads.py [--requests 30] [--rows 1000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import requests
from common import REPO_ROOT, free_port, load_average
from runtime.server import start_native_server

from rmodelpack.manifest import load_manifest
from rmodelpack.render import runtime_config

EXAMPLE = REPO_ROOT / "examples" / "cars93-ranger"


def request_body(rows: int) -> bytes:
    sample = json.loads((EXAMPLE / "requests" / "predict.json").read_text())
    records = sample["data"] if isinstance(sample, dict) else sample
    return json.dumps({"data": [records[i % len(records)] for i in range(rows)]}).encode()


def latencies(threads: int, body: bytes, count: int, workdir: Path) -> list[float]:
    manifest, _ = load_manifest(EXAMPLE)
    model = EXAMPLE / "model.rds"
    config = runtime_config(manifest, hashlib.sha256(model.read_bytes()).hexdigest())
    config["input"]["max_rows"] = max(config["input"]["max_rows"], 100_000)
    config_path = workdir / f"config-{threads}.json"
    config_path.write_text(json.dumps(config))
    server = start_native_server(
        config_path,
        free_port(),
        env={
            "RMP_MODEL_PATH": str(model),
            "RMP_WORKERS": "1",
            "RMP_THREADS": str(threads),
            "RMP_DRAIN_SECONDS": "0",
        },
        tmpdir=workdir / f"tmp-{threads}",
    )
    try:
        server.wait_ready()
        url = f"{server.base_url}/predict"
        headers = {"Content-Type": "application/json"}
        for _ in range(3):
            requests.post(url, data=body, headers=headers, timeout=60).raise_for_status()
        times = []
        for _ in range(count):
            started = time.perf_counter()
            requests.post(url, data=body, headers=headers, timeout=60).raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
        return times
    finally:
        server.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args()
    body = request_body(args.rows)
    print(f"load average before: {load_average()}")
    print(f"cars93-ranger, 1 worker, {args.rows}-row /predict, {args.requests} sequential requests")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for threads in (1, 2):
            times = sorted(latencies(threads, body, args.requests, Path(tmp)))
            results[threads] = statistics.median(times)
            p90 = times[int(0.9 * (len(times) - 1))]
            print(f"threads={threads}: median {results[threads]:.1f} ms, p90 {p90:.1f} ms")
    print(f"speed-up of 2 threads: {results[1] / results[2]:.2f}x")
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
