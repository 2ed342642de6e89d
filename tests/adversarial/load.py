"""A bounded HTTP load that records every answer (keep-alive sessions, one per connection).

Shared by the fault tests, the soak test and benchmarks/reliability_long.py. Every loop is
bounded in time and in request count; traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests


def json_body(rows: list[dict[str, Any]]) -> bytes:
    return json.dumps(rows).encode()


@dataclass
class Outcome:
    at: float  # time.monotonic() when the answer arrived
    status: int  # 0: no HTTP answer at all (connection error, timeout)
    seconds: float
    detail: str = ""


@dataclass
class Load:
    """`connections` threads POSTing `body` to `url` until stopped, `seconds` pass or
    `max_requests` answers are in."""

    url: str
    body: bytes
    connections: int = 8
    seconds: float = 60.0
    max_requests: int = 1_000_000
    timeout: float = 60.0
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _client(self, deadline: float) -> None:
        headers = {"Content-Type": "application/json"}
        with requests.Session() as session:
            while not self._stop.is_set() and time.monotonic() < deadline:
                with self._lock:
                    if len(self.outcomes) >= self.max_requests:
                        return
                started = time.monotonic()
                try:
                    response = session.post(
                        self.url, data=self.body, headers=headers, timeout=self.timeout
                    )
                    outcome = Outcome(
                        time.monotonic(),
                        response.status_code,
                        time.monotonic() - started,
                        "" if response.status_code == 200 else response.text[:300],
                    )
                except requests.RequestException as exc:
                    outcome = Outcome(time.monotonic(), 0, time.monotonic() - started, repr(exc))
                with self._lock:
                    self.outcomes.append(outcome)

    def start(self) -> Load:
        deadline = time.monotonic() + self.seconds
        self._threads = [
            threading.Thread(target=self._client, args=(deadline,), daemon=True)
            for _ in range(self.connections)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> Load:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 5)
        return self

    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def wait(self) -> Load:
        for thread in self._threads:
            thread.join(timeout=self.seconds + self.timeout + 5)
        return self

    def failures(self) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.status != 200]

    def count(self) -> int:
        with self._lock:
            return len(self.outcomes)

    def latencies(self) -> list[float]:
        with self._lock:
            return sorted(o.seconds for o in self.outcomes if o.status == 200)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
