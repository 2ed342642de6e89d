"""Readiness, worker replacement, draining on SIGTERM and failing loudly."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from runtime.conftest import ServerFactory
from runtime.server import NativeServer

SCRIPTS = Path(__file__).parent / "scripts"
DRAIN_SECONDS = 0
TIMEOUT_SECONDS = 30


def use_script(name: str, **runtime: Any):
    def tweak(config: dict[str, Any]) -> None:
        config["scoring"]["script"] = str(SCRIPTS / name)
        config["runtime"].update(runtime)

    return tweak


def wait_until(condition, timeout: float = 20.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError("condition not met in time")


def answers(server: NativeServer, path: str) -> bool:
    try:
        return requests.get(server.url(path), timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def score_one(server: NativeServer, row: dict[str, Any]) -> int:
    return requests.post(server.url("/score"), json={"df": [row]}, timeout=60).status_code


def test_readyz_flips_with_loading_and_draining(
    server_factory: ServerFactory, r_predictions: dict
) -> None:
    server = server_factory(use_script("slow_load.R", drain_seconds=2), wait=False)
    wait_until(lambda: answers(server, "/healthz"))
    loading = requests.get(server.url("/readyz"), timeout=5)
    assert loading.status_code == 503
    assert loading.json()["error"]["code"] == "not_ready"
    server.wait_ready()
    row = r_predictions["rows"][0]
    assert score_one(server, row) == 200

    server.process.send_signal(signal.SIGTERM)
    wait_until(lambda: requests.get(server.url("/readyz"), timeout=5).status_code == 503, timeout=1)
    assert score_one(server, row) == 200, "still serving while draining"
    assert server.process.wait(timeout=30) == 0


def test_killed_worker_is_replaced_while_serving(
    server_factory: ServerFactory, r_predictions: dict
) -> None:
    server = server_factory(env={"RMP_WORKERS": "2"})
    row = r_predictions["rows"][0]
    statuses: list[tuple[float, int]] = []
    stop = threading.Event()

    def client() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                response = session.post(server.url("/score"), json={"df": [row]}, timeout=30)
                if response.status_code != 200:
                    assert response.json()["error"]["status"] == response.status_code
                statuses.append((time.monotonic(), response.status_code))

    threads = [threading.Thread(target=client) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    victim = server.worker_pids()[1]
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_until(lambda: server.worker_pids().get(1) not in (None, victim))
    server.wait_ready(timeout=20)
    replaced_at = time.monotonic()
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)

    after = [status for at, status in statuses if at > replaced_at]
    assert len(after) > 10 and set(after) == {200}
    during = [status for at, status in statuses if killed_at <= at <= replaced_at]
    assert sum(status != 200 for status in during) <= 3  # at most the requests it held
    metrics = requests.get(server.url("/metrics"), timeout=10).text
    assert "rmp_worker_restarts_total 1" in metrics
    assert server.terminate() == 0


def test_sigterm_lets_in_flight_requests_finish(
    server_factory: ServerFactory, r_predictions: dict
) -> None:
    server = server_factory(
        use_script("slow_score.R", drain_seconds=DRAIN_SECONDS, timeout_seconds=TIMEOUT_SECONDS),
        env={"RMP_WORKERS": "2"},
    )
    rows = r_predictions["rows"][:4]
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(score_one, server, row) for row in rows]
        time.sleep(0.4)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        results = [future.result(timeout=60) for future in futures]
    assert results == [200, 200, 200, 200]
    assert server.process.wait(timeout=35) == 0
    assert time.monotonic() - started < DRAIN_SECONDS + TIMEOUT_SECONDS
    assert not list(server.tmpdir.glob("rmodelpack.*")), "the run directory is cleaned up"


def test_supervisor_death_stops_the_server(server_factory: ServerFactory) -> None:
    server = server_factory(env={"RMP_WORKERS": "1"})
    worker = server.worker_pids()[1]
    supervisor = int((server.run_dir / "supervisor.pid").read_text())
    os.kill(supervisor, signal.SIGKILL)
    assert server.process.wait(timeout=20) != 0
    wait_until(lambda: not Path(f"/proc/{worker}").exists(), timeout=5)


def test_missing_config_key_fails_loudly(server_factory: ServerFactory) -> None:
    def drop_drain(config: dict[str, Any]) -> None:
        del config["runtime"]["drain_seconds"]

    server = server_factory(drop_drain, wait=False)
    assert server.process.wait(timeout=30) != 0
    assert "runtime.drain_seconds" in server.stderr_path.read_text()
