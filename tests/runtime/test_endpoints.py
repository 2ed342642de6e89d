"""The GET endpoints, the access log and /metrics on the shared Boston server."""

from __future__ import annotations

import re
import time

import requests
from conftest import metric_samples

from runtime.server import NativeServer


def get(server: NativeServer, path: str) -> requests.Response:
    return requests.get(server.url(path), timeout=10)


def test_healthz_and_readyz(boston_server: NativeServer) -> None:
    assert get(boston_server, "/healthz").json() == {"status": "ok"}
    assert get(boston_server, "/readyz").json() == {"status": "ready"}


def test_metadata(boston_server: NativeServer, boston_config: dict) -> None:
    body = get(boston_server, "/metadata").json()
    assert body["name"] == "boston-rf"
    assert body["version"] == boston_config["version"]
    assert body["sha256"] == boston_config["model"]["sha256"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", body["r_version"])
    assert set(body["packages"]) >= {"randomForest", "plumber", "jsonlite"}
    assert [c["name"] for c in body["input"]["columns"]] == [
        c["name"] for c in boston_config["input"]["columns"]
    ]


def test_vetiver_ping_and_prototype(boston_server: NativeServer) -> None:
    assert get(boston_server, "/ping").json()["status"] == "online"
    prototype = get(boston_server, "/prototype").json()
    assert list(prototype)[:3] == ["crim", "zn", "indus"]
    assert prototype["crim"]["type"] == "double"
    assert prototype["chas"]["type"] == "integer"


def test_openapi_is_typed_from_the_schema(boston_server: NativeServer) -> None:
    spec = get(boston_server, "/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert {"/predict", "/score", "/metadata"} <= set(spec["paths"])
    row = spec["components"]["schemas"]["Row"]
    assert row["properties"]["chas"] == {
        "type": "integer",
        "minimum": 0,
        "maximum": 1,
        "example": 0,
    }
    assert row["properties"]["crim"]["type"] == "number"
    assert "lstat" in row["required"]
    docs = get(boston_server, "/docs")
    assert docs.headers["Content-Type"].startswith("text/html")
    assert "openapi.json" in docs.text and "ptratio" in docs.text


def test_access_log_has_one_json_line_per_request(
    boston_server: NativeServer, r_predictions: dict
) -> None:
    request_id = f"log-check-{time.time_ns()}"
    response = requests.post(
        boston_server.url("/score"),
        json={"df": r_predictions["rows"][:3]},
        headers={"X-Request-Id": request_id},
        timeout=10,
    )
    assert response.headers["X-Request-Id"] == request_id
    assert "X-Rmp-Rows" not in response.headers
    deadline = time.monotonic() + 5
    lines: list[dict] = []
    while time.monotonic() < deadline and not lines:
        lines = [e for e in boston_server.access_log() if e["request_id"] == request_id]
        time.sleep(0.05)
    assert len(lines) == 1
    entry = lines[0]
    assert set(entry) == {"time", "request_id", "method", "path", "status", "rows", "duration_ms"}
    assert (entry["method"], entry["path"], entry["status"], entry["rows"]) == (
        "POST",
        "/score",
        200,
        3,
    )
    assert isinstance(entry["duration_ms"], int)


# Workers write their counters at most 0.2 s after a request (metrics.R); wait that out.
FLUSH_WAIT_SECONDS = 0.5


def scrape(server: NativeServer) -> dict[str, float]:
    time.sleep(FLUSH_WAIT_SECONDS)
    return metric_samples(server.url("/metrics"))


def test_metrics_count_what_was_sent(boston_server: NativeServer, r_predictions: dict) -> None:
    ok = 'rmp_requests_total{route="/predict",method="POST",status="200"}'
    bad = 'rmp_requests_total{route="/predict",method="POST",status="422"}'
    before = scrape(boston_server)
    for _ in range(7):
        requests.post(boston_server.url("/predict"), json=r_predictions["rows"][:2], timeout=10)
    for _ in range(3):
        requests.post(boston_server.url("/predict"), json=[{"crim": 1}], timeout=10)
    after = scrape(boston_server)
    assert after[ok] - before.get(ok, 0) == 7
    assert after[bad] - before.get(bad, 0) == 3
    count = "rmp_request_duration_seconds_count"
    assert after[count] - before[count] >= 10 + 1  # the first scrape is counted too
    assert after['rmp_request_duration_seconds_bucket{le="+Inf"}'] == after[count]
    assert after["rmp_workers"] == 2
    assert after["rmp_model_load_seconds"] > 0
    assert after["rmp_in_flight_requests"] == 0
    assert "rmp_worker_restarts_total" in after
