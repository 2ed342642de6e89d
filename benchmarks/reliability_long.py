"""The adversarial suite's long runs (issue 11), with the figures the README's Reliability
section quotes. A benchmark, not a test: it reports, it never fails.

- schemathesis against each example's own /openapi.json, natively: every phase, the suite's
  checks, rounds with new seeds until at least --cases cases per example; failures and errors.
- SIGKILL of a worker under 8-connection load, --kills times: recovery seconds, failed requests.
- SIGTERM under 8-connection load (drain, then in-flight requests finish): failed HTTP answers.
- a soak of --soak-seconds at 8 keep-alive connections: requests, errors, p99, and the PSS of
  all server processes at minute 1 and at the end.

    .venv/bin/python benchmarks/reliability_long.py [--cases 10000] [--soak-seconds 300]
        [--kills 10] [--skip fuzz,kill,stop,soak]

Traffic goes to 127.0.0.1 only; every loop is bounded in time and count.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from adversarial.examples import (
    EXAMPLES,
    example_config,
    example_rows,
    start_example,
)
from adversarial.fuzz import run_schemathesis
from adversarial.load import Load, json_body, percentile
from adversarial.memory import group_pss_mib
from common import load_average
from runtime.server import NativeServer


def serve(name: str, workdir: Path, **env: str) -> tuple[NativeServer, list[dict[str, Any]]]:
    config, model = example_config(name)
    server = start_example(config, model, workdir, {"RMP_WORKERS": "2", **env})
    server.wait_ready()
    return server, example_rows(name)


def fuzz(name: str, target: int, workdir: Path) -> dict[str, Any]:
    server, _ = serve(name, workdir / name)
    cases, problems, seed, started = 0, [], 100, time.monotonic()
    try:
        while cases < target:
            result = run_schemathesis(server.base_url, 1000, workdir / f"{name}-{seed}", seed=seed)
            cases += result.cases
            problems += result.problems
            print(f"  {name} seed {seed}: {result.cases} cases, problems {result.problems}")
            seed += 1
        alive = server.process.poll() is None
    finally:
        server.kill()
    return {
        "cases": cases,
        "problems": problems,
        "seconds": time.monotonic() - started,
        "alive": alive,
    }


def kill_under_load(kills: int, workdir: Path) -> dict[str, Any]:
    server, rows = serve("boston-rf", workdir / "kill")
    load = Load(server.url("/predict"), json_body(rows), connections=8, seconds=kills * 3 + 30)
    load.start()
    recoveries = []
    try:
        time.sleep(1)
        for i in range(kills):
            worker_id = 1 + i % 2
            victim = server.worker_pids()[worker_id]
            os.kill(victim, signal.SIGKILL)
            killed = time.monotonic()
            while server.worker_pids().get(worker_id) in (None, victim):
                time.sleep(0.01)
                if time.monotonic() - killed > 30:
                    raise RuntimeError("worker not replaced in 30 s")
            recoveries.append(time.monotonic() - killed)
            time.sleep(1.5)
    finally:
        load.stop()
        server.kill()
    return {"requests": load.count(), "failed": len(load.failures()), "recoveries": recoveries}


def stop_under_load(workdir: Path) -> dict[str, Any]:
    """SIGTERM while 8 connections score: every request that got an HTTP answer got a 200;
    once nginx has closed its port, new connections are refused (counted apart)."""
    server, rows = serve("boston-rf", workdir / "stop", RMP_DRAIN_SECONDS="2")
    load = Load(
        server.url("/predict"), json_body(rows * 40), connections=8, seconds=30, timeout=40
    ).start()
    time.sleep(2)
    server.process.send_signal(signal.SIGTERM)
    status = server.process.wait(timeout=60)
    load.stop()
    answered = [o for o in load.outcomes if o.status != 0]
    return {
        "requests": load.count(),
        "http_errors": sum(o.status != 200 for o in answered),
        "refused_after_close": sum(o.status == 0 for o in load.outcomes),
        "exit": status,
    }


def soak(seconds: int, workdir: Path) -> dict[str, Any]:
    server, rows = serve("boston-rf", workdir / "soak")
    load = Load(
        server.url("/predict"),
        json_body(rows),
        connections=8,
        seconds=seconds,
        max_requests=10_000_000,
    ).start()
    samples: list[tuple[float, float]] = []
    started = time.monotonic()
    try:
        while load.running():
            time.sleep(5)
            samples.append((time.monotonic() - started, group_pss_mib(server.process.pid)))
        load.wait()
    finally:
        server.kill()
    minute_one = next((pss for at, pss in samples if at >= 60), samples[0][1])
    latencies = load.latencies()
    return {
        "requests": load.count(),
        "failed": len(load.failures()),
        "rate": load.count() / seconds,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "pss_minute_one": minute_one,
        "pss_end": samples[-1][1],
        "pss_max": max(p for _, p in samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000, help="schemathesis cases per example")
    parser.add_argument("--soak-seconds", type=int, default=300)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--skip", default="", help="comma-separated: fuzz,kill,stop,soak")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    print(f"load average before: {load_average()}; cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory(prefix="rmp-reliability-") as tmp:
        workdir = Path(tmp)
        if "fuzz" not in skip:
            for name in EXAMPLES:
                result = fuzz(name, args.cases, workdir)
                print(
                    f"schemathesis {name}: {result['cases']} cases in "
                    f"{result['seconds']:.0f} s, failures/errors: {result['problems'] or 0}, "
                    f"server alive after: {result['alive']}"
                )
        if "kill" not in skip:
            result = kill_under_load(args.kills, workdir)
            rec = result["recoveries"]
            print(
                f"SIGKILL x{len(rec)} under 8 connections: {result['failed']} failed of "
                f"{result['requests']} requests; recovery median {statistics.median(rec):.2f} s, "
                f"max {max(rec):.2f} s"
            )
        if "stop" not in skip:
            result = stop_under_load(workdir)
            print(
                f"SIGTERM under 8 connections: {result['http_errors']} failed HTTP answers of "
                f"{result['requests']} requests; {result['refused_after_close']} connection(s) "
                f"refused after the port closed; exit {result['exit']}"
            )
        if "soak" not in skip:
            result = soak(args.soak_seconds, workdir)
            growth = (result["pss_end"] / result["pss_minute_one"] - 1) * 100
            print(
                f"soak {args.soak_seconds} s at 8 connections: {result['requests']} requests "
                f"({result['rate']:.0f}/s), {result['failed']} failed, p50 "
                f"{result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms; PSS "
                f"{result['pss_minute_one']:.1f} MiB at minute 1 -> {result['pss_end']:.1f} MiB "
                f"at the end ({growth:+.1f}%), max {result['pss_max']:.1f} MiB"
            )
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
