"""SCGI spoken straight to a worker's port (rmodelpack/runtime/scgi.R), bypassing nginx: the
ports and the per-start token are read from the run directory's nginx.conf."""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from adversarial.rawhttp import connect


@dataclass(frozen=True)
class ScgiTarget:
    """The workers' SCGI ports (index 0 is worker 1) and the token nginx sends."""

    ports: tuple[int, ...]
    token: str


def scgi_target(run_dir: Path) -> ScgiTarget:
    conf = (run_dir / "nginx.conf").read_text()
    block = re.search(r"upstream rmp_workers \{(.*?)\}", conf, re.S)
    assert block is not None, "no upstream rmp_workers in nginx.conf"
    ports = tuple(int(p) for p in re.findall(r"server 127\.0\.0\.1:(\d+) max_fails=0;", block[1]))
    token = re.search(r"scgi_param RMP_TOKEN ([0-9a-f]+);", conf)
    assert ports and token is not None, conf
    return ScgiTarget(ports, token[1])


def netstring(fields: list[tuple[str, str]] | list[tuple[bytes, bytes]]) -> bytes:
    block = b"".join(_raw(name) + b"\0" + _raw(value) + b"\0" for name, value in fields)
    return str(len(block)).encode() + b":" + block + b","


def _raw(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode()


def predict_fields(
    body: bytes, token: str | None, request_id: str = "scgi-test", path: str = "/predict"
) -> list[tuple[str, str]]:
    """The fields nginx.conf.in sends, in its order (CONTENT_LENGTH first)."""
    fields = [
        ("CONTENT_LENGTH", str(len(body))),
        ("SCGI", "1"),
        ("REQUEST_METHOD", "POST"),
        ("RMP_PATH", path),
        ("QUERY_STRING", ""),
        ("CONTENT_TYPE", "application/json"),
        ("HTTP_X_REQUEST_ID", request_id),
    ]
    return fields + ([("RMP_TOKEN", token)] if token is not None else [])


def predict_request(body: bytes, token: str | None, request_id: str = "scgi-test") -> bytes:
    return netstring(predict_fields(body, token, request_id)) + body


@dataclass
class Closing:
    """What a server sent before it closed the connection; `closed` is False when it was still
    open at the deadline."""

    data: bytes
    closed: bool
    seconds: float


def read_to_close(sock: socket.socket, timeout: float) -> Closing:
    started = time.monotonic()
    deadline = started + timeout
    chunks = []
    closed = False
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        chunks.append(chunk)
    return Closing(b"".join(chunks), closed, time.monotonic() - started)


def send_and_close(port: int, data: bytes, timeout: float = 10.0) -> Closing:
    """Send `data`, then wait for the server to close (the write side stays open, so a server
    waiting for more bytes shows as not closed)."""
    with connect(port, timeout) as sock:
        sock.sendall(data)
        return read_to_close(sock, timeout)


@dataclass
class ScgiResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def parse_response(data: bytes) -> ScgiResponse:
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, f"no end of the SCGI response head: {data[:300]!r}"
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    status = int(headers["status"].split(" ", 1)[0])
    assert int(headers["content-length"]) == len(body), (headers, len(body))
    return ScgiResponse(status, headers, body)


def scgi_exchange(port: int, data: bytes, timeout: float = 15.0) -> ScgiResponse:
    answer = send_and_close(port, data, timeout)
    assert answer.closed, f"no close after {timeout}s: {answer.data[:300]!r}"
    return parse_response(answer.data)
