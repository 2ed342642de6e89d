"""Predictions from the native server equal R's own predict() on the same rows."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from runtime.conftest import BOSTON_DIR
from runtime.server import NativeServer

TOLERANCE = 1e-9


def post(server: NativeServer, path: str, body: Any) -> requests.Response:
    return requests.post(server.url(path), json=body, timeout=30)


def assert_close(actual: list[float], expected: list[float]) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert got == pytest.approx(want, abs=TOLERANCE, rel=0)


def test_predict_records_match_r(boston_server: NativeServer, r_predictions: dict) -> None:
    response = post(boston_server, "/predict", r_predictions["rows"])
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert_close(response.json()["predictions"], r_predictions["predictions"])


def test_predict_data_wrapper_matches_r(boston_server: NativeServer, r_predictions: dict) -> None:
    response = post(boston_server, "/predict", {"data": r_predictions["rows"]})
    assert response.status_code == 200, response.text
    assert_close(response.json()["predictions"], r_predictions["predictions"])


def test_score_is_the_reference_contract(boston_server: NativeServer, r_predictions: dict) -> None:
    """{"df": [...]} in (target column included, as real clients send), a bare array out."""
    response = post(boston_server, "/score", {"df": r_predictions["rows"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, list)
    assert_close(body, r_predictions["predictions"])


def test_predictions_keep_input_order(boston_server: NativeServer, r_predictions: dict) -> None:
    order = list(reversed(range(len(r_predictions["rows"]))))
    rows = [r_predictions["rows"][i] for i in order]
    response = post(boston_server, "/predict", rows)
    assert_close(response.json()["predictions"], [r_predictions["predictions"][i] for i in order])


def test_single_row_matches_r(boston_server: NativeServer, r_predictions: dict) -> None:
    response = post(boston_server, "/score", {"df": r_predictions["rows"][:1]})
    assert_close(response.json(), r_predictions["predictions"][:1])


@pytest.mark.parametrize("name", ["score.json", "predict.json"])
def test_bundled_sample_requests_score(boston_server: NativeServer, name: str) -> None:
    body = json.loads((BOSTON_DIR / "requests" / name).read_text())
    path = "/score" if name == "score.json" else "/predict"
    response = post(boston_server, path, body)
    assert response.status_code == 200, response.text
    rows = body.get("df") or body.get("data")
    predictions = response.json() if path == "/score" else response.json()["predictions"]
    assert len(predictions) == len(rows)
    assert all(isinstance(value, float) and 5 < value < 51 for value in predictions)
