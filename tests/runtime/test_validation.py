"""Input validation on the unsimplified JSON rows: every wrong value is named by row and field,
and the predictions come back as exactly R's doubles."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from runtime.server import NativeServer


def details(response: requests.Response) -> dict[tuple[Any, str], str]:
    assert response.status_code == 422, response.text
    return {(d["row"], d["field"]): d["problem"] for d in response.json()["error"]["details"]}


@pytest.fixture(scope="module")
def rows(r_predictions: dict) -> list[dict[str, Any]]:
    return copy.deepcopy(r_predictions["rows"][:6])


def test_arrays_and_objects_as_values_are_named(boston_server: NativeServer, rows: list) -> None:
    rows = copy.deepcopy(rows)
    rows[1]["crim"] = []
    rows[2]["zn"] = {"value": 1}
    rows[5]["tax"] = [296, 297]
    response = requests.post(boston_server.url("/predict"), json=rows, timeout=30)
    assert details(response) == {
        (1, "crim"): "expected number, got array",
        (2, "zn"): "expected number, got object",
        (5, "tax"): "expected number, got array",
    }


def test_booleans_hidden_among_numbers_are_found(boston_server: NativeServer, rows: list) -> None:
    rows = copy.deepcopy(rows)
    rows[4]["chas"] = False
    response = requests.post(boston_server.url("/score"), json={"df": rows}, timeout=30)
    assert details(response) == {(4, "chas"): "expected number, got boolean"}


def test_a_key_missing_from_some_rows_is_a_row_problem(
    boston_server: NativeServer, rows: list
) -> None:
    rows = copy.deepcopy(rows)
    del rows[3]["lstat"]
    rows[0]["lstat"] = None
    response = requests.post(boston_server.url("/predict"), json=rows, timeout=30)
    assert details(response) == {
        (0, "lstat"): "required value is missing or null",
        (3, "lstat"): "required value is missing or null",
    }


@pytest.mark.parametrize("row", [5, "x", [1], None])
def test_rows_that_are_not_objects_are_422(
    boston_server: NativeServer, rows: list, row: Any
) -> None:
    response = requests.post(boston_server.url("/predict"), json=[rows[0], row], timeout=30)
    assert response.status_code == 422, response.text
    assert "array of row objects" in response.json()["error"]["message"]


def test_predictions_are_exactly_rs_doubles(
    boston_server: NativeServer, boston_model: Path, r_predictions: dict
) -> None:
    """17 significant digits from R itself: the JSON must read back as the very same doubles."""
    script = (
        "suppressPackageStartupMessages(library(randomForest));"
        f"m <- readRDS('{boston_model}'); rows <- MASS::Boston[1:60, ];"
        "cat(sprintf('%.17g', predict(m, rows)), sep = '\\n')"
    )
    out = subprocess.run(
        ["Rscript", "--vanilla", "-e", script], check=True, capture_output=True, text=True
    ).stdout
    expected = [float(line) for line in out.split()]
    response = requests.post(boston_server.url("/predict"), json=r_predictions["rows"], timeout=30)
    assert response.json()["predictions"] == expected
