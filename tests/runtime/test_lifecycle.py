"""Readiness, worker replacement, draining on SIGTERM and failing loudly."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from conftest import metric_samples

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


@dataclass(frozen=True)
class Outcome:
    """One client request: its HTTP status, or None when no whole answer came (`problem`)."""

    at: float
    status: int | None
    problem: str = ""


def post_outcome(session: requests.Session, url: str, body: Any) -> Outcome:
    """Never raises: a cut or refused answer is an outcome the test counts, not a dead thread."""
    try:
        response = session.post(url, json=body, timeout=30)
    except requests.RequestException as error:
        return Outcome(time.monotonic(), None, f"{type(error).__name__}: {error}")
    problem = ""
    if response.status_code != 200:
        try:
            shape_ok = response.json()["error"]["status"] == response.status_code
        except (ValueError, KeyError, TypeError):
            shape_ok = False
        problem = "" if shape_ok else f"not the JSON error shape: {response.text[:200]}"
    return Outcome(time.monotonic(), response.status_code, problem)


def test_killed_worker_is_replaced_while_serving(
    server_factory: ServerFactory, r_predictions: dict
) -> None:
    server = server_factory(env={"RMP_WORKERS": "2"})
    row = r_predictions["rows"][0]
    outcomes: list[list[Outcome]] = [[] for _ in range(3)]
    stop = threading.Event()

    def client(mine: list[Outcome]) -> None:
        with requests.Session() as session:
            while not stop.is_set():
                mine.append(post_outcome(session, server.url("/score"), {"df": [row]}))

    threads = [threading.Thread(target=client, args=(mine,)) for mine in outcomes]
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

    every = [outcome for mine in outcomes for outcome in mine]
    # The requests the killed worker held are retried on the other worker by nginx
    # (scgi_next_upstream ... non_idempotent), and a 1-row answer is one write: the worker dies
    # before it or after it, so no client may see a cut or dropped answer (IncompleteRead,
    # connection reset), and every error answer is the JSON shape.
    assert [o for o in every if o.status is None] == []
    assert [o for o in every if o.problem] == []
    for mine in outcomes:  # every client thread kept going until the end
        after = [o.status for o in mine if o.at > replaced_at]
        assert len(after) > 3 and set(after) == {200}
    during = [o.status for o in every if killed_at <= o.at <= replaced_at]
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


SCORE_COUNT = 'rmp_requests_total{{route="/score",method="POST",status="{}"}}'
SCORE_SERIES = 'rmp_requests_total{route="/score",'


def score_counts(server: NativeServer) -> dict[str, float]:
    """rmp_requests_total for POST /score, by series."""
    samples = metric_samples(server.url("/metrics")).items()
    return {series: n for series, n in samples if series.startswith(SCORE_SERIES)}


def added_counts(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: n - before.get(name, 0) for name, n in after.items() if n != before.get(name, 0)}


def test_an_answer_after_nginx_gave_up_is_counted_once_as_its_504(
    server_factory: ServerFactory, r_predictions: dict
) -> None:
    """nginx answers the queued request with its 504 at timeout_seconds and counts it; the
    worker finishes that request a second later, and /metrics must not count it again as 200."""
    server = server_factory(
        use_script("slower_score.R", timeout_seconds=2), env={"RMP_WORKERS": "1"}
    )
    before = score_counts(server)
    with ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(lambda row: score_one(server, row), r_predictions["rows"][:2]))
    assert statuses == [200, 504]
    time.sleep(2.5)  # the worker finishes the second request at ~3 s, then flushes within 0.2 s
    added = added_counts(before, score_counts(server))
    assert added == {SCORE_COUNT.format(200): 1, SCORE_COUNT.format(504): 1}


def test_a_late_sent_request_answered_in_time_is_counted(
    server_factory: ServerFactory, r_predictions: dict
) -> None:
    """nginx's timeout runs from when it has sent the whole request: a 16 MB body queued behind
    a 1.5 s request is sent only as the worker reads it, and its answer ~3 s after it arrived
    is in time (200 to the client), so /metrics counts it as a 200."""
    server = server_factory(
        use_script("slower_score.R", timeout_seconds=2, max_body_bytes=32 * 1024 * 1024),
        env={"RMP_WORKERS": "1"},
    )
    row = r_predictions["rows"][0]
    padded = (" " * (16 * 1024 * 1024) + json.dumps({"df": [row]})).encode()

    def post_padded() -> int:
        url = server.url("/score")
        headers = {"Content-Type": "application/json"}
        return requests.post(url, data=padded, headers=headers, timeout=30).status_code

    before = score_counts(server)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(score_one, server, row)
        time.sleep(0.3)
        big = pool.submit(post_padded)
        assert (first.result(), big.result()) == (200, 200)
    time.sleep(0.5)
    assert added_counts(before, score_counts(server)) == {SCORE_COUNT.format(200): 2}
