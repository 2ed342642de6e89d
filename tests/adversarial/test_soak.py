"""Soak: 60 s at saturation (8 keep-alive connections, 2 workers on 2 cores): no failed
request, and the server's memory (PSS of all its processes) grows by less than SOAK_PSS_GROWTH
from the first sample (after 15 s of load) to the end. benchmarks/reliability_long.py runs the
5-minute version."""

from __future__ import annotations

import time

import pytest

from adversarial.conftest import ServeExample, every_worker_serves
from adversarial.load import Load, json_body, percentile
from adversarial.memory import group_pss_mib

pytestmark = [pytest.mark.r, pytest.mark.slow]

SOAK_SECONDS = 60
WARM_SECONDS = 15
SOAK_PSS_GROWTH = 0.05


def test_soak_at_saturation(serve_example: ServeExample) -> None:
    served = serve_example("boston-rf")
    pgid = served.server.process.pid
    load = Load(
        served.url("/predict"),
        json_body(served.rows),
        connections=8,
        seconds=SOAK_SECONDS,
        max_requests=500_000,
    ).start()
    time.sleep(WARM_SECONDS)
    first = group_pss_mib(pgid)
    samples = [first]
    while load.running():
        time.sleep(5)
        samples.append(group_pss_mib(pgid))
    load.wait()
    last = samples[-1]
    count = load.count()
    print(
        f"soak: {count} requests in {SOAK_SECONDS}s ({count / SOAK_SECONDS:.0f}/s), "
        f"p99 {percentile(load.latencies(), 0.99) * 1000:.0f} ms, PSS {first:.1f} -> "
        f"{last:.1f} MiB (max {max(samples):.1f})"
    )
    assert count > 1000
    assert load.failures() == []
    assert last <= first * (1 + SOAK_PSS_GROWTH), samples
    every_worker_serves(served)
