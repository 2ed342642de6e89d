"""Bounded client traffic through Traefik on 127.0.0.1: every loop stops at a request count and a
deadline, whichever comes first, and records every answer (or the error instead of one)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from cluster_node.boston import (
    ingress_host,
    ingress_session,
    ingress_url,
    other_ingresses_for,
    predict_body,
)


@dataclass
class Answer:
    path: str
    status: int | None  # None: no HTTP answer at all (connection refused/reset, timeout)
    version: str | None = None  # /metadata's model version
    predictions: list[float] | None = None
    error: str = ""


@dataclass
class Traffic:
    """`threads` clients sending `paths` in turn to `host` through Traefik until stop(),
    `max_requests` or `max_seconds`. Use as a context manager; answers are in .answers."""

    ca_crt: Path
    host: str
    paths: tuple[str, ...] = ("/predict",)
    threads: int = 1
    pause: float = 0.0
    max_requests: int = 5000
    max_seconds: float = 300
    request_ids: str = ""  # X-Request-Id prefix; each request gets PREFIX-N
    body: dict = field(default_factory=predict_body)  # what /predict is sent
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)
    _sent: int = 0

    def __enter__(self) -> Traffic:
        deadline = time.monotonic() + self.max_seconds
        for _ in range(self.threads):
            worker = threading.Thread(target=self._run, args=(deadline,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def join(self) -> None:
        """Waits until the clients reach max_requests or max_seconds."""
        for worker in self._workers:
            worker.join(timeout=self.max_seconds + 60)

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=60)

    def _next_number(self) -> int | None:
        with self._lock:
            if self._sent >= self.max_requests:
                return None
            self._sent += 1
            return self._sent

    def _run(self, deadline: float) -> None:
        session = ingress_session(self.ca_crt, self.host)
        while not self._stop.is_set() and time.monotonic() < deadline:
            number = self._next_number()
            if number is None:
                return
            path = self.paths[number % len(self.paths)]
            headers = {"X-Request-Id": f"{self.request_ids}-{number}"} if self.request_ids else {}
            answer = send(session, path, self.body, headers)
            with self._lock:
                self.answers.append(answer)
            if self.pause:
                time.sleep(self.pause)

    def failures(self) -> list[Answer]:
        with self._lock:
            return [answer for answer in self.answers if answer.status != 200]

    def versions(self) -> list[str]:
        with self._lock:
            return [a.version for a in self.answers if a.version is not None]


def send(session: requests.Session, path: str, body: dict, headers: dict) -> Answer:
    try:
        if path == "/predict":
            response = session.post(ingress_url(path), json=body, headers=headers, timeout=30)
        else:
            response = session.get(ingress_url(path), headers=headers, timeout=30)
    except requests.RequestException as error:
        return Answer(path, None, error=repr(error))
    answer = Answer(path, response.status_code)
    if response.status_code != 200:
        answer.error = response.text[:300]
    elif path == "/metadata":
        answer.version = response.json()["version"]
    elif path == "/predict":
        answer.predictions = response.json()["predictions"]
    return answer


def wait_for_route(ca_crt: Path, namespace: str, timeout: float = 120) -> str:
    """Waits until Traefik routes the host of the release in `namespace` (it loads the chart's
    Ingress and TLS Secret a few seconds after they appear: until then it presents its default
    certificate, an SSL error, or answers 404); returns the host. Fails at once when an Ingress
    in another namespace claims the same host: Traefik would then answer through that release's
    router (its basic auth: 401 with our password), which no retry can tell from a real fault."""
    host = ingress_host(namespace)
    others = other_ingresses_for(host, namespace)
    assert not others, f"{host} is also claimed by {others}; every release needs a host of its own"
    session = ingress_session(ca_crt, host)
    deadline = time.monotonic() + timeout
    while True:
        answer = send(session, "/metadata", {}, {})
        if answer.status == 200:
            return host
        assert time.monotonic() < deadline, f"no route through Traefik: {answer}"
        time.sleep(1)
