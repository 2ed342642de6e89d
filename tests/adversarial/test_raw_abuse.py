"""Raw-socket abuse of the front: bytes no HTTP library would send. Each attack gets the one
JSON error shape (or, where HTTP leaves nothing to say, a clean close), never nginx's HTML page
and never a 5xx; afterwards every worker still serves. Issue 11: two requests with a method R
did not know took the whole pod out for 10 s."""

from __future__ import annotations

import re
import socket
import threading
import time
from typing import Any

import pytest
import requests

from adversarial.conftest import Served, ServeExample, assert_json_error, every_worker_serves
from adversarial.load import Load, json_body, percentile
from adversarial.rawhttp import (
    RawResponse,
    connect,
    exchange,
    parse_responses,
    read_until_closed,
    request_bytes,
)

pytestmark = [pytest.mark.r]

# Headers nginx lets through but httpuv's parser rejects (a control byte in a value).
CONTROL_HEADER = "X-Note: a\x01b"


@pytest.fixture(scope="module")
def boston(serve_example: ServeExample) -> Served:
    return serve_example("boston-rf")


def only_response(data: bytes) -> RawResponse:
    responses = parse_responses(data)
    assert len(responses) == 1, data[:500]
    return responses[0]


def raw(method: str, path: str, extra: str = "", body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}\r\n"
    return head.encode("latin-1") + body


# (name, request bytes, status of the JSON error). Every one is answered by nginx itself.
ERROR_CASES: list[tuple[str, bytes, int]] = [
    ("unknown method QUERY", raw("QUERY", "/ping"), 405),
    ("unknown method PROPFIND", raw("PROPFIND", "/predict"), 405),
    ("TRACE", raw("TRACE", "/predict"), 405),
    ("wrong method on a route", raw("GET", "/predict"), 405),
    ("DELETE on a probe", raw("DELETE", "/healthz"), 405),
    ("lowercase method", raw("get", "/ping"), 400),
    ("unknown path", raw("GET", "/etc/passwd"), 404),
    ("unknown path, unknown method", raw("QUERY", "/nope"), 404),
    ("path traversal", raw("GET", "/../../etc/passwd"), 400),
    ("%00 in the path", raw("GET", "/pi%00ng"), 400),
    ("NUL in the path", raw("GET", "/pi\x00ng"), 400),
    ("control byte in the path", raw("GET", "/pi\x01ng"), 400),
    ("control byte after the version", b"GET /ping HTTP/1.1\x01\r\nHost: x\r\n\r\n", 400),
    ("100 KB request line", raw("GET", "/" + "a" * 100_000), 414),
    ("10,000 headers", raw("GET", "/ping", "".join(f"X-H{i}: v\r\n" for i in range(10_000))), 431),
    ("one 64 KB header", raw("GET", "/ping", f"X-Big: {'b' * 65536}\r\n"), 431),
    ("negative Content-Length", raw("POST", "/predict", "Content-Length: -1\r\n"), 400),
    (
        "two Content-Lengths",
        raw("POST", "/predict", "Content-Length: 2\r\nContent-Length: 3\r\n"),
        400,
    ),
    ("Content-Length not a number", raw("POST", "/predict", "Content-Length: 1e3\r\n"), 400),
    (
        "chunked garbage",
        raw("POST", "/predict", "Transfer-Encoding: chunked\r\n", b"zz\r\nabc\r\n0\r\n\r\n"),
        400,
    ),
    (
        "chunk size overflow",
        raw("POST", "/predict", "Transfer-Encoding: chunked\r\n", b"ffffffffffffffffff\r\n"),
        400,
    ),
    (
        "chunked and Content-Length",
        raw(
            "POST", "/predict", "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n"
        ),
        400,
    ),
    ("unknown transfer coding", raw("POST", "/predict", "Transfer-Encoding: gzip\r\n"), 501),
    ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    ("HTTP/2.0 request line", raw("GET", "/ping").replace(b"HTTP/1.1", b"HTTP/2.0", 1), 505),
    ("HTTP/9.9 request line", raw("GET", "/ping").replace(b"HTTP/1.1", b"HTTP/9.9", 1), 505),
    ("no Host in HTTP/1.1", b"GET /ping HTTP/1.1\r\nConnection: close\r\n\r\n", 400),
    ("space in a header name", raw("GET", "/ping", "Bad Header: x\r\n"), 400),
    (
        "body over the limit",
        raw("POST", "/predict", "Content-Length: 104857600\r\nContent-Type: application/json\r\n"),
        413,
    ),
]


@pytest.mark.parametrize(("name", "data", "status"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_attack_gets_the_json_error(boston: Served, name: str, data: bytes, status: int) -> None:
    response = only_response(exchange(boston.server.port, data, timeout=15))
    error = assert_json_error(response.status, response.headers, response.body, status)
    assert error["request_id"] == response.headers["x-request-id"]
    if status == 405:
        allow = response.headers.get("allow")
        if "/predict" in name or name.startswith(("unknown method P", "TRACE", "wrong")):
            assert allow == "POST", response.headers
        if "probe" in name:
            assert allow == "GET, HEAD", response.headers


def test_every_worker_serves_after_the_attacks(boston: Served) -> None:
    for _, data, _ in ERROR_CASES:
        exchange(boston.server.port, data, timeout=15)
    every_worker_serves(boston)


def test_unknown_methods_never_reach_r_or_take_a_worker_out(boston: Served) -> None:
    """The issue's outage: QUERY twice emptied the pool for 10 s. Now the front answers it and
    later requests are all 200."""
    for _ in range(20):
        assert requests.request("QUERY", boston.url("/ping"), timeout=10).status_code == 405
    body = json_body(boston.rows[:1])
    statuses = [
        requests.post(
            boston.url("/predict"),
            data=body,
            timeout=30,
            headers={"Content-Type": "application/json"},
        ).status_code
        for _ in range(20)
    ]
    assert statuses == [200] * 20
    metrics = requests.get(boston.url("/metrics"), timeout=10).text
    # Answered by nginx (method label bounded to "other"), never by an R worker.
    assert 'method="QUERY"' not in metrics
    assert re.search(
        r'rmp_requests_total\{route="/ping",method="other",status="405"\} \d+', metrics
    )


def test_an_early_error_is_counted_under_the_clients_own_method(
    serve_example: ServeExample,
) -> None:
    """A POST whose body framing nginx refuses (chunked in HTTP/1.0) is answered from the early
    error location, whose redirect made $request_method GET: it was counted as a GET. Its own
    server, so that no other test's 400 is in the counts."""
    served = serve_example("boston-rf")
    framing = (
        b"POST /predict HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\n"
    )
    for _ in range(3):
        answer = only_response(exchange(served.server.port, framing))
        assert_json_error(answer.status, answer.headers, answer.body, 400)
    time.sleep(1.5)  # nginx flushes its answers log at least once a second
    metrics = requests.get(served.url("/metrics"), timeout=10).text
    assert re.search(
        r'rmp_requests_total\{route="/predict",method="POST",status="400"\} 3\b', metrics
    ), [line for line in metrics.splitlines() if 'status="400"' in line]
    assert 'method="GET",status="400"' not in metrics


def test_a_control_byte_in_a_header_never_reaches_a_worker(boston: Served) -> None:
    """httpuv drops the connection on it (nginx would answer 502 and retry on a second
    worker); only sanitised headers are forwarded, so it is served normally."""
    response = only_response(
        exchange(boston.server.port, raw("GET", "/ping", CONTROL_HEADER + "\r\n"))
    )
    assert response.status == 200, response.body
    bad_type = raw(
        "POST",
        "/predict",
        f"Content-Type: application/json\x01\r\nContent-Length: {len(json_body(boston.rows))}\r\n",
        json_body(boston.rows),
    )
    response = only_response(exchange(boston.server.port, bad_type))
    assert_json_error(response.status, response.headers, response.body, 415)
    every_worker_serves(boston)


def test_head_is_served_like_get_without_a_body(boston: Served) -> None:
    data = exchange(boston.server.port, raw("HEAD", "/metadata"))
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data[:300]
    assert rest == b""
    response = only_response(exchange(boston.server.port, raw("HEAD", "/predict")))
    assert response.status == 405 and response.headers["allow"] == "POST"


def test_pipelined_requests_are_answered_in_order(boston: Served) -> None:
    body = json_body(boston.rows[:1])
    data = (
        request_bytes("GET", "/ping")
        + request_bytes("POST", "/predict", body, {"Content-Type": "application/json"})
        + request_bytes("QUERY", "/ping")
        + request_bytes("GET", "/nope")
        + request_bytes("GET", "/metadata", headers={"Connection": "close"})
    )
    responses = parse_responses(exchange(boston.server.port, data, timeout=15))
    assert [r.status for r in responses] == [200, 200, 405, 404, 200]
    assert len(responses[1].json()["predictions"]) == 1
    for response in responses[2:4]:
        assert_json_error(response.status, response.headers, response.body, response.status)


def test_a_half_closed_client_still_gets_its_answer(boston: Served) -> None:
    body = json_body(boston.rows)
    data = request_bytes("POST", "/predict", body, {"Content-Type": "application/json"})
    response = only_response(exchange(boston.server.port, data, timeout=15, half_close=True))
    assert response.status == 200
    assert len(response.json()["predictions"]) == len(boston.rows)


def test_http_0_9_gets_a_bare_json_body_and_a_close(boston: Served) -> None:
    data = exchange(boston.server.port, b"GET /nope\r\n", timeout=10)
    assert not data.startswith(b"HTTP/"), "HTTP/0.9 has no status line"
    assert data and b"<html" not in data.lower()
    assert _json_error_code(data) == "not_found"


def _json_error_code(data: bytes) -> str:
    import json

    return json.loads(data)["error"]["code"]


def _trickle_headers(port: int, seconds: float, result: dict[str, Any]) -> None:
    """slowloris: one header byte every 0.5 s; records when (and how) the server gave up."""
    started = time.monotonic()
    with connect(port, timeout=seconds + 5) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n")
        try:
            while time.monotonic() - started < seconds:
                sock.sendall(b"X")
                time.sleep(0.5)
            result["closed_after"] = None
        except (BrokenPipeError, ConnectionResetError):
            result["closed_after"] = time.monotonic() - started
            return
        result["answer"] = read_until_closed(sock, timeout=2)


def _slow_body(port: int, pause: float, result: dict[str, Any]) -> None:
    """Headers promise 100 bytes; 10 come, then nothing for `pause` seconds."""
    with connect(port, timeout=pause + 10) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n[{"crim": '
        )
        started = time.monotonic()
        result["answer"] = read_until_closed(sock, timeout=pause + 5)
        result["seconds"] = time.monotonic() - started


def test_slow_and_idle_clients_do_not_starve_others(boston: Served) -> None:
    """slowloris headers, a stalled body and 1,000 idle connections at once: nginx cuts the
    slow ones off (client_header_timeout / client_body_timeout 10 s), holds the idle ones,
    and a well-behaved client is served all along."""
    slowloris: dict[str, Any] = {}
    slow_body: dict[str, Any] = {}
    threads = [
        threading.Thread(target=_trickle_headers, args=(boston.server.port, 16, slowloris)),
        threading.Thread(target=_slow_body, args=(boston.server.port, 14, slow_body)),
    ]
    idle = [socket.create_connection(("127.0.0.1", boston.server.port)) for _ in range(1000)]
    try:
        for thread in threads:
            thread.start()
        load = (
            Load(
                boston.url("/predict"),
                json_body(boston.rows[:1]),
                connections=2,
                seconds=13,
                timeout=10,
            )
            .start()
            .wait()
        )
        for thread in threads:
            thread.join(timeout=30)
    finally:
        for sock in idle:
            sock.close()
    assert load.count() > 100 and not load.failures(), load.failures()[:3]
    assert percentile(load.latencies(), 0.99) < 1.0
    # slowloris: cut off without an answer after ~10 s (HTTP has nothing to say to it).
    assert slowloris.get("closed_after") is not None or slowloris.get("answer") == b"", slowloris
    if slowloris.get("closed_after") is not None:
        assert 9 <= slowloris["closed_after"] <= 15
    # The stalled body: the JSON 408, or a clean close, after client_body_timeout.
    answer = slow_body["answer"]
    assert 9 <= slow_body["seconds"] <= 14, slow_body
    if answer:
        response = only_response(answer)
        assert_json_error(response.status, response.headers, response.body, 408)
    every_worker_serves(boston)
