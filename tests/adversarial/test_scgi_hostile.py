"""Attacks on the workers' SCGI ports (rmodelpack/runtime/scgi.R). R's serverSocket() listens on
every interface, so anyone who can reach a worker's port can send it bytes: only a request with
the per-start token (nginx.conf) is answered, garbage is closed, idle or slow connections hold
no worker, and every such attack leaves the workers (same pids) serving nginx's requests."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from adversarial.conftest import Served, ServeExample, assert_json_error, every_worker_serves
from adversarial.load import json_body
from adversarial.rawhttp import connect, request_bytes
from adversarial.scgi import (
    ScgiTarget,
    netstring,
    parse_response,
    predict_fields,
    predict_request,
    read_to_close,
    scgi_exchange,
    scgi_target,
    send_and_close,
)

pytestmark = [pytest.mark.r]

# Above the 1 MiB the worker reads at once (scgi.R), so a large body arrives in several reads.
MAX_BODY = 4 * 1024 * 1024
# The image's locale (base-images/*/Dockerfile): R checks strings as UTF-8 in it.
IMAGE_LOCALE = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def boston(serve_example: ServeExample) -> Served:
    def tweak(config: dict[str, Any]) -> None:
        config["runtime"]["max_body_bytes"] = MAX_BODY

    return serve_example("boston-rf", tweak=tweak, env=IMAGE_LOCALE)


@pytest.fixture(scope="module")
def target(boston: Served) -> ScgiTarget:
    found = scgi_target(boston.server.run_dir)
    assert len(found.ports) == boston.workers
    return found


@pytest.fixture(scope="module")
def expected(boston: Served) -> bytes:
    """The body nginx answers for the sample rows (request id fixed, so it is reproducible)."""
    response = post_predict(boston, json_body(boston.rows), "expected-1")
    assert response.status_code == 200, response.text
    return response.content


def post_predict(served: Served, body: bytes, request_id: str = "") -> requests.Response:
    headers = {**JSON, **({"X-Request-Id": request_id} if request_id else {})}
    return requests.post(served.url("/predict"), data=body, headers=headers, timeout=30)


def assert_front_predicts(served: Served, expected: bytes, times: int = 4) -> None:
    for _ in range(times):
        response = post_predict(served, json_body(served.rows), "expected-1")
        assert response.status_code == 200, response.text
        assert response.content == expected


def running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in {"Z", "X"}


def wait_all_up(served: Served, seconds: float = 15.0) -> dict[int, int]:
    """The workers' pids once each up file names a running process."""
    deadline = time.monotonic() + seconds
    while True:
        pids = served.server.worker_pids()
        whole = len(pids) == served.workers and all(map(running, pids.values()))
        if whole or time.monotonic() > deadline:
            return pids
        time.sleep(0.1)


def scgi_answers(port: int, token: str, body: bytes) -> bool:
    try:
        return scgi_exchange(port, predict_request(body, token), timeout=10).status == 200
    except (OSError, AssertionError):
        return False


@pytest.fixture
def same_workers(boston: Served, target: ScgiTarget, expected: bytes) -> Iterator[None]:
    """The test must leave every worker alive (the same process) and serving."""
    before = wait_all_up(boston)
    yield
    # A round trip through each worker's port first: whatever the attack did is done by then.
    body = json_body(boston.rows)
    answered = [scgi_answers(port, target.token, body) for port in target.ports]
    alive = {worker: running(pid) for worker, pid in before.items()}
    after = boston.server.worker_pids()
    if not all(answered) or not all(alive.values()) or after != before:
        # Let the supervisor replace the dead, so that the next test starts whole.
        wait_all_up(boston)
        pytest.fail(
            f"a worker died: answered {answered}, alive {alive}, pids {before} -> {after}\n"
            f"{boston.server.logs()[-2000:]}"
        )
    assert_front_predicts(boston, expected)
    every_worker_serves(boston)


# 1. The real protocol, straight to each worker.


def test_a_request_with_the_token_is_answered_like_through_nginx(
    boston: Served, target: ScgiTarget, expected: bytes
) -> None:
    body = json_body(boston.rows)
    for port in target.ports:
        response = scgi_exchange(port, predict_request(body, target.token, "expected-1"))
        assert response.status == 200, response.body[:300]
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-rmp-rows"] == str(len(boston.rows))
        assert response.body == expected


@pytest.mark.parametrize(
    "token",
    [None, "", "0" * 48, "WRONG", "token-prefix"],
    ids=["missing", "empty", "zeros", "other", "prefix-of-real"],
)
def test_a_request_without_the_right_token_is_closed_unanswered(
    boston: Served, target: ScgiTarget, token: str | None, same_workers: None
) -> None:
    if token == "token-prefix":
        token = target.token[:-1]
    body = json_body(boston.rows)
    for port in target.ports:
        answer = send_and_close(port, predict_request(body, token))
        assert answer.closed and answer.data == b"", answer


def test_the_token_in_another_field_is_not_enough(
    boston: Served, target: ScgiTarget, same_workers: None
) -> None:
    """Only a field named RMP_TOKEN counts (R's `$` would also take RMP_TOKENS)."""
    body = json_body(boston.rows)
    fields = [*predict_fields(body, None), ("RMP_TOKENS", target.token), ("X", target.token)]
    answer = send_and_close(target.ports[0], netstring(fields) + body)
    assert answer.closed and answer.data == b"", answer


# 2. Garbage. Each is closed at once (the server never waits for more) and answers nothing.


def garbage_cases(token: str, body: bytes) -> dict[str, bytes]:
    good = predict_fields(body, token)

    def with_length(value: bytes) -> bytes:
        return netstring([(b"CONTENT_LENGTH", value), *_encoded(good[1:])]) + body

    block = netstring(good)
    return {
        "random bytes": bytes(range(256)) * 4,
        "HTTP instead of SCGI": request_bytes("POST", "/predict", body, JSON),
        "9-digit netstring length": b"123456789:" + block[block.index(b":") + 1 :],
        "7-digit netstring length": b"1000000:" + b"\0" * 64,
        "zero netstring length": b"0:," + body,
        "negative netstring length": b"-5:ab\0c\0,",
        "NUL before the colon": b"1\x002:" + block,
        "no comma after the block": block[:-1] + b";" + body,
        "no NUL before the comma": block[:-2] + b"x," + body,
        "odd number of fields": raw_netstring(block[block.index(b":") + 1 : -1] + b"LONELY\0"),
        "non-numeric CONTENT_LENGTH": with_length(b"12abc"),
        "negative CONTENT_LENGTH": with_length(b"-1"),
        "huge CONTENT_LENGTH": with_length(b"9" * 40),
        "CONTENT_LENGTH over max body": with_length(str(MAX_BODY + 1).encode()),
        "CONTENT_LENGTH not UTF-8": with_length(b"\xff\xfe"),
        "CONTENT_LENGTH not UTF-8, no token": netstring(
            [(b"CONTENT_LENGTH", b"1\xff"), (b"SCGI", b"1")]
        ),
        "token not UTF-8": netstring([*_encoded(good[:-1]), (b"RMP_TOKEN", b"\xff" * 48)]) + body,
        "field names not UTF-8": netstring([(b"\xc3(", b"\xa0\xa1"), (b"SCGI", b"1")]),
        "64 KiB of NULs": b"65536:" + b"\0" * 65536 + b",",
        "header block over 64 KiB": b"65537:" + b"\0" * 65537 + b",",
    }


def raw_netstring(block: bytes) -> bytes:
    return str(len(block)).encode() + b":" + block + b","


def _encoded(fields: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode()) for name, value in fields]


GARBAGE_NAMES = list(garbage_cases("t", b"{}"))


@pytest.mark.parametrize("name", GARBAGE_NAMES)
def test_garbage_is_closed_unanswered_and_the_worker_lives(
    boston: Served, target: ScgiTarget, name: str, same_workers: None
) -> None:
    data = garbage_cases(target.token, json_body(boston.rows))[name]
    for port in target.ports:
        answer = send_and_close(port, data, timeout=5)
        assert answer.closed, f"{name}: still open after 5 s"
        assert answer.data == b"", answer.data[:300]


def test_a_body_longer_than_declared_is_answered_for_the_declared_part(
    boston: Served, target: ScgiTarget, expected: bytes, same_workers: None
) -> None:
    body = json_body(boston.rows)
    fields = predict_fields(body, target.token, "expected-1")
    data = netstring(fields) + body + b"}{ trailing garbage" * 1000
    response = scgi_exchange(target.ports[0], data)
    assert response.status == 200 and response.body == expected


# 3. A slow sender holds no worker.


def test_a_byte_at_a_time_request_is_answered_while_others_are_served(
    boston: Served, target: ScgiTarget, expected: bytes, same_workers: None
) -> None:
    port = target.ports[0]
    data = predict_request(json_body(boston.rows[:1]), target.token, "slow-1")
    quick = predict_request(json_body(boston.rows), target.token, "expected-1")
    served_meanwhile = 0
    with connect(port, timeout=15) as slow:
        for index in range(len(data)):
            slow.sendall(data[index : index + 1])
            if index % 100 == 50:
                # The same worker and the front both answer while the slow one trickles in.
                assert scgi_exchange(port, quick, timeout=10).body == expected
                assert_front_predicts(boston, expected, times=1)
                served_meanwhile += 1
            time.sleep(0.001)
        answer = read_to_close(slow, timeout=15)
    assert served_meanwhile >= 3, len(data)
    response = parse_response(answer.data)
    assert response.status == 200
    assert len(json.loads(response.body)["predictions"]) == 1


# 4. Idle connections.


def open_idle(port: int, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sockets.append(socket.create_connection(("127.0.0.1", port), timeout=5))
    return sockets


def closed_by_peer(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def test_idle_connections_over_the_cap_are_closed_and_the_front_serves(
    boston: Served, target: ScgiTarget, expected: bytes, same_workers: None
) -> None:
    port = target.ports[0]
    pid = boston.server.worker_pids()[1]
    idle = open_idle(port, 300)
    try:
        time.sleep(1)
        # R itself allows 128 connections (125 for the program) whatever the cap in scgi.R.
        assert running(pid), "worker 1 died holding idle SCGI connections"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            closed = sum(closed_by_peer(sock) for sock in idle)
            if closed >= 300 - 256:
                break
            time.sleep(0.2)
        # The worker keeps at most 64 (rmp_scgi_max_connections, scgi.R; it was 256 when this
        # test found that R's own limit of 128 killed the worker first); the rest are closed.
        assert 300 - 256 <= closed < 300, closed
        started = time.monotonic()
        assert_front_predicts(boston, expected, times=8)
        assert time.monotonic() - started < 30
    finally:
        for sock in idle:
            sock.close()
    # Their slots are freed once the worker sees them closed.
    deadline = time.monotonic() + 10
    quick = predict_request(json_body(boston.rows), target.token, "expected-1")
    while True:
        answer = send_and_close(port, quick, timeout=5)
        if answer.data or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert parse_response(answer.data).body == expected


def test_an_idle_connection_is_closed_after_the_timeout(serve_example: ServeExample) -> None:
    timeout = 2

    def tweak(config: dict[str, Any]) -> None:
        config["runtime"]["timeout_seconds"] = timeout

    served = serve_example("boston-rf", tweak=tweak, env={**IMAGE_LOCALE, "RMP_WORKERS": "1"})
    try:
        found = scgi_target(served.server.run_dir)
        pids = served.server.worker_pids()
        with (
            connect(found.ports[0], timeout=10) as silent,
            connect(found.ports[0], timeout=10) as partial,
        ):
            partial.sendall(b"120:CONTENT_LENGTH\0")
            silent_answer = read_to_close(silent, timeout=timeout + 4)
            partial_answer = read_to_close(partial, timeout=2)
        for answer in (silent_answer, partial_answer):
            assert answer.closed and answer.data == b"", answer
        # Closed by the reaper (checked once a second), not at once.
        assert timeout - 0.5 <= silent_answer.seconds <= timeout + 2, silent_answer.seconds
        response = post_predict(served, json_body(served.rows))
        assert response.status_code == 200, response.text
        assert served.server.worker_pids() == pids
    finally:
        served.server.kill()


# 5. Through nginx: large bodies, non-ASCII errors, request ids.


def test_a_body_over_one_read_chunk_is_answered_whole(
    boston: Served, target: ScgiTarget, expected: bytes, same_workers: None
) -> None:
    # The example's max_rows (1000) bounds the rows, so JSON whitespace makes the bytes.
    copies = 1000 // len(boston.rows)
    body = json.dumps(boston.rows * copies, indent=80).encode()
    assert 1024 * 1024 < len(body) < MAX_BODY
    small = json.loads(expected)["predictions"]
    response = post_predict(boston, body)
    assert response.status_code == 200, response.text[:300]
    assert json.loads(response.content)["predictions"] == small * copies
    direct = scgi_exchange(target.ports[1], predict_request(body, target.token), timeout=30)
    assert direct.status == 200
    assert json.loads(direct.body)["predictions"] == small * copies


# A NUL escape is refused before validation (400): no R string can hold it.
@pytest.mark.parametrize(
    ("value", "status"),
    [("é", 422), ("🦀 crab", 422), ("\u202e\u0000x", 400)],
    ids=["e-acute", "emoji", "rlo-nul"],
)
def test_a_non_ascii_value_in_a_number_field_gets_a_sized_error(
    boston: Served, target: ScgiTarget, value: str, status: int, same_workers: None
) -> None:
    rows = [dict(boston.rows[0], crim=value, **{"naïve ☃": 1})]
    body = json.dumps(rows, ensure_ascii=False).encode()
    response = post_predict(boston, body, "utf8-id")
    assert int(response.headers["Content-Length"]) == len(response.content)
    error = assert_json_error(
        response.status_code, dict(response.headers), response.content, status
    )
    assert error["request_id"] == "utf8-id"
    if status == 422:
        assert error["details"][0]["field"] == "crim"
    direct = scgi_exchange(target.ports[0], predict_request(body, target.token, "utf8-id"))
    assert direct.status == status
    assert direct.body == response.content


# Multi-byte characters at every offset, so that the parser's excerpt of the bad JSON (which
# the message quotes) starts and ends inside them.
NON_ASCII_JSON = [(ch, pad) for ch in ("é", "☃", "🦀") for pad in range(4)]


@pytest.mark.parametrize(
    ("char", "pad"), NON_ASCII_JSON, ids=[f"{c}-{p}" for c, p in NON_ASCII_JSON]
)
def test_an_error_quoting_non_ascii_text_has_its_utf8_length(
    boston: Served, target: ScgiTarget, char: str, pad: int
) -> None:
    body = ('[{"crim": "' + "a" * pad + char * 40 + '" x}]').encode()
    response = post_predict(boston, body, "utf8-id")
    assert int(response.headers["Content-Length"]) == len(response.content)
    # Strict UTF-8, then JSON: a split character would fail here.
    error = assert_json_error(
        response.status_code, dict(response.headers), response.content.decode("utf-8").encode(), 400
    )
    assert char in error["message"] and error["request_id"] == "utf8-id"
    # Straight to a worker (nginx lets only [A-Za-z0-9._:-] ids through): a non-ASCII id.
    request_id = "id-é☃🦀"
    direct = scgi_exchange(target.ports[1], predict_request(body, target.token, request_id))
    assert direct.status == 400
    error = json.loads(direct.body.decode("utf-8"))["error"]
    assert error["request_id"] == request_id and char in error["message"]


def test_the_clients_request_id_comes_back(boston: Served, same_workers: None) -> None:
    ok = post_predict(boston, json_body(boston.rows), "client-id.42:a_b-c")
    assert ok.status_code == 200
    # A 200's body is the predictions only; the id comes back as a header.
    assert ok.headers["X-Request-Id"] == "client-id.42:a_b-c"
    bad = post_predict(boston, b'[{"crim": "x"}]', "client-id.43")
    assert bad.headers["X-Request-Id"] == "client-id.43"
    error = assert_json_error(bad.status_code, dict(bad.headers), bad.content, 422)
    assert error["request_id"] == "client-id.43"


# 6. Clients that leave before their answer.


def send_and_vanish(port: int, data: bytes, reset: bool) -> None:
    with connect(port, timeout=10) as sock:
        sock.sendall(data)
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_clients_that_disconnect_after_sending_break_nothing(
    boston: Served, same_workers: None
) -> None:
    body = json_body(boston.rows * 40)
    data = request_bytes("POST", "/predict", body, JSON)
    errors: list[BaseException] = []

    def client(index: int) -> None:
        try:
            send_and_vanish(boston.server.port, data, reset=index % 2 == 0)
        except OSError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors[:3]
    assert not any(thread.is_alive() for thread in threads)
