"""Faults, bounded in time, on 127.0.0.1: a worker killed under load, a scoring call that never
returns, a stopped worker, no worker able to serve, and the death of nginx or the supervisor."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from conftest import metric_samples

from adversarial.conftest import (
    Served,
    ServeExample,
    assert_json_error,
    every_worker_serves,
    use_script,
)
from adversarial.load import Load, json_body

pytestmark = [pytest.mark.r, pytest.mark.slow]

TIMEOUT_SECONDS = 2
HANG_CRIM = 77  # tests/runtime/scripts/hang_score.R never returns on this value


def wait_until(condition: Callable[[], object], timeout: float, interval: float = 0.02) -> float:
    """Seconds it took for `condition` to hold; fails after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def replaced(served: Served, worker_id: int, old_pid: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return served.server.worker_pids().get(worker_id) not in (None, old_pid)
        except FileNotFoundError:
            return False

    return check


def metric(served: Served, name: str) -> float:
    samples = metric_samples(served.url("/metrics"))
    assert name in samples, f"{name} not in /metrics"
    return samples[name]


def test_sigkill_of_workers_under_load_fails_no_request(serve_example: ServeExample) -> None:
    """8 keep-alive connections; a worker is SIGKILLed three times. Requests it held are
    retried on the other worker, new ones skip its socket until it is replaced: 0 failures."""
    served = serve_example("boston-rf")
    load = Load(served.url("/predict"), json_body(served.rows), connections=8, seconds=30).start()
    recoveries = []
    try:
        time.sleep(1.0)
        for victim_id in (1, 2, 1):
            victim = served.server.worker_pids()[victim_id]
            os.kill(victim, signal.SIGKILL)
            recoveries.append(wait_until(replaced(served, victim_id, victim), timeout=20))
            time.sleep(1.0)
    finally:
        load.stop()
    print(f"recovery seconds: {[round(r, 2) for r in recoveries]}, requests: {load.count()}")
    assert load.count() > 200
    # A worker writes a small SCGI answer, headers and body, with one send(): a kill comes
    # either before it (nginx retries the request on the other worker) or after it, so no
    # short bodies. (A large answer can take several sends and could still be cut.)
    assert load.failures() == []
    assert metric(served, "rmp_worker_restarts_total") == 3
    every_worker_serves(served)


def test_a_hung_scoring_call_is_a_504_and_its_worker_is_replaced(
    serve_example: ServeExample,
) -> None:
    """The client gets the JSON 504 at timeout_seconds; other requests keep being served; the
    stuck worker is killed (not left burning a core) and replaced."""
    served = serve_example("boston-rf", use_script("hang_score.R", timeout_seconds=TIMEOUT_SECONDS))
    pids_before = served.server.worker_pids()
    hang = [{**served.rows[0], "crim": HANG_CRIM}]
    others = Load(
        served.url("/predict"),
        json_body(served.rows[:1]),
        connections=1,
        seconds=TIMEOUT_SECONDS + 4,
    ).start()
    started = time.monotonic()
    response = requests.post(served.url("/predict"), json=hang, timeout=30)
    elapsed = time.monotonic() - started
    assert_json_error(response.status_code, dict(response.headers), response.content, 504)
    assert TIMEOUT_SECONDS - 0.1 <= elapsed <= TIMEOUT_SECONDS + 1.0, elapsed
    wait_until(
        lambda: set(served.server.worker_pids().values()) - set(pids_before.values()), timeout=10
    )
    stuck = (set(pids_before.values()) - set(served.server.worker_pids().values())).pop()
    wait_until(
        lambda: (
            not Path(f"/proc/{stuck}").exists()
            or Path(f"/proc/{stuck}/stat").read_text().split(") ")[1][0] == "Z"
        ),
        timeout=5,
    )
    others.wait()
    assert others.count() > 20 and others.failures() == []
    assert metric(served, "rmp_worker_restarts_total") == 1
    every_worker_serves(served)


def test_a_stopped_worker_is_killed_and_replaced(serve_example: ServeExample) -> None:
    """SIGSTOP: the worker's socket still accepts, but it never answers. Once its heartbeat is
    older than timeout_seconds it is killed; the requests queued on it are retried."""
    served = serve_example(
        "boston-rf", use_script("strict_score.R", timeout_seconds=TIMEOUT_SECONDS)
    )
    victim = served.server.worker_pids()[1]
    load = Load(
        served.url("/predict"),
        json_body(served.rows[:1]),
        connections=4,
        seconds=TIMEOUT_SECONDS + 6,
    ).start()
    time.sleep(0.5)
    os.kill(victim, signal.SIGSTOP)
    took = wait_until(replaced(served, 1, victim), timeout=TIMEOUT_SECONDS + 5)
    load.wait()
    print(f"stopped worker replaced after {took:.2f}s; requests: {load.count()}")
    # A request that reached the stopped worker in its last moments may time out, as a JSON
    # 504; nothing else fails.
    for failure in load.failures():
        assert failure.status == 504 and json.loads(failure.detail)["error"]["code"] == "timeout"
    assert len(load.failures()) <= 2, load.failures()
    assert not Path(f"/proc/{victim}").exists() or "Z" in Path(f"/proc/{victim}/stat").read_text()
    every_worker_serves(served)


def test_readyz_is_503_while_no_worker_can_serve(serve_example: ServeExample) -> None:
    """One worker, stopped: /readyz turns 503 once it is found hung, for as long as its
    replacement loads (slow_load.R takes 2 s), then 200 again."""
    served = serve_example(
        "boston-rf",
        use_script("slow_load.R", timeout_seconds=TIMEOUT_SECONDS),
        env={"RMP_WORKERS": "1"},
    )
    victim = served.server.worker_pids()[1]
    os.kill(victim, signal.SIGSTOP)
    stopped = time.monotonic()

    def readyz() -> requests.Response:
        return requests.get(served.url("/readyz"), timeout=5)

    wait_until(lambda: readyz().status_code == 503, timeout=TIMEOUT_SECONDS + 3)
    not_ready = readyz()
    assert_json_error(not_ready.status_code, dict(not_ready.headers), not_ready.content, 503)
    assert not_ready.json()["error"]["code"] == "not_ready"
    # While nobody can serve, a request gets the JSON 502, never a hang or an HTML page.
    response = requests.post(served.url("/predict"), json=served.rows, timeout=30)
    assert_json_error(response.status_code, dict(response.headers), response.content, 502)
    wait_until(lambda: readyz().status_code == 200, timeout=15)
    print(f"not ready for {time.monotonic() - stopped:.2f}s after the stop")
    every_worker_serves(served)


def port_refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


@pytest.mark.parametrize("victim", ["nginx", "supervisor"])
def test_death_of_a_core_process_stops_the_server(serve_example: ServeExample, victim: str) -> None:
    """SIGKILL nginx, or the R supervisor: the entrypoint exits 1 within seconds (Kubernetes
    restarts the container) and nothing is left answering on the port."""
    served = serve_example("boston-rf")
    workers = list(served.server.worker_pids().values())
    pid_file = "nginx.pid" if victim == "nginx" else "supervisor.pid"
    pid = int((served.server.run_dir / pid_file).read_text().strip())
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    assert served.server.process.wait(timeout=10) == 1
    print(f"{victim} killed: server exited after {time.monotonic() - killed:.2f}s")
    wait_until(lambda: port_refuses(served.server.port), timeout=5)
    for worker in workers:
        wait_until(
            lambda w=worker: (
                not Path(f"/proc/{w}").exists()
                or "Z" in Path(f"/proc/{w}/stat").read_text().split(") ")[1][:2]
            ),
            timeout=5,
        )
