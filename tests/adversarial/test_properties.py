"""Property tests of the validator through HTTP (hypothesis): any row the input schema allows
gets a 200 whose predictions equal R's own predict() within 1e-9; any row that breaks it gets a
4xx naming that row and field, never a 5xx."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from image.containers import NATIVE_PREDICT_R, expected_predictions

from adversarial.conftest import Served, ServeExample
from adversarial.examples import EXAMPLES

pytestmark = [pytest.mark.r]

TOLERANCE = 1e-9
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module", params=EXAMPLES)
def served(request, serve_example: ServeExample) -> Served:
    return serve_example(request.param)


def column_values(column: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values the column accepts (bounded to what a model sees in practice)."""
    low = column["min"] if column["min"] is not None else -1e6
    high = column["max"] if column["max"] is not None else 1e6
    if column["type"] == "number":
        return st.floats(low, high, allow_nan=False, allow_infinity=False)
    if column["type"] == "integer":
        return st.integers(math.ceil(low), math.floor(high))
    if column["type"] == "factor":
        return st.sampled_from(column["levels"])
    if column["type"] == "string":
        return st.sampled_from(column["allowed"]) if column["allowed"] else st.text(max_size=20)
    return st.booleans()


def valid_rows(config: dict[str, Any]) -> st.SearchStrategy[list[dict[str, Any]]]:
    row = st.fixed_dictionaries({c["name"]: column_values(c) for c in config["input"]["columns"]})
    return st.lists(row, min_size=1, max_size=5)


def post(served: Served, rows: Any) -> requests.Response:
    return requests.post(served.url("/predict"), json=rows, timeout=30)


def r_predictions(served: Served, rows: list[dict[str, Any]], workdir: Path) -> list[Any]:
    """R's own predict() on the rows, typed as the config says (tests/image/native_predict.R)."""
    rows_file = workdir / "rows.json"
    rows_file.write_text(json.dumps(rows))
    config_file = workdir / "config.json"
    config_file.write_text(json.dumps(served.config))
    done = subprocess.run(
        [
            "Rscript",
            "--vanilla",
            str(NATIVE_PREDICT_R),
            str(config_file),
            str(served.model_path),
            str(rows_file),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return expected_predictions(served.config["output"]["kind"], json.loads(done.stdout))


def assert_close(actual: Any, expected: Any, where: str) -> None:
    if isinstance(expected, dict):
        assert sorted(actual) == sorted(expected), where
        for key in expected:
            assert_close(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, float | int) and not isinstance(expected, bool):
        assert math.isclose(actual, expected, rel_tol=0, abs_tol=TOLERANCE), (
            where,
            actual,
            expected,
        )
    else:
        assert actual == expected, (where, actual, expected)


def test_valid_rows_get_r_own_predictions(served: Served, tmp_path: Path) -> None:
    seen_rows: list[dict[str, Any]] = []
    seen_predictions: list[Any] = []

    @SETTINGS
    @given(rows=valid_rows(served.config))
    def check(rows: list[dict[str, Any]]) -> None:
        response = post(served, rows)
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        assert len(predictions) == len(rows)
        seen_rows.extend(rows)
        seen_predictions.extend(predictions)

    check()
    # One R process for every row hypothesis tried (an Rscript per example would be slow).
    expected = r_predictions(served, seen_rows, tmp_path)
    assert len(seen_rows) >= 150
    for index, (got, want) in enumerate(zip(seen_predictions, expected, strict=True)):
        assert_close(got, want, f"row {index}")


def breakages(column: dict[str, Any]) -> list[tuple[str, Any]]:
    """(what, value) pairs the column rejects."""
    broken: list[tuple[str, Any]] = [
        ("null", None),
        ("array", [1]),
        ("object", {"x": 1}),
    ]
    if column["type"] in ("number", "integer"):
        broken += [("string", "12"), ("boolean", True)]
        if column["min"] is not None:
            broken.append(("below min", column["min"] - 1))
        if column["max"] is not None:
            broken.append(("above max", column["max"] + 1))
        if column["type"] == "integer":
            broken += [("fraction", (column["min"] or 0) + 0.5), ("beyond R's integers", 2**31)]
    else:
        broken += [("number", 5), ("boolean", False), ("unknown level", "no-such-level")]
    return broken


@st.composite
def one_broken_field(draw: st.DrawFn, config: dict[str, Any]) -> tuple[list, int, str]:
    rows = draw(valid_rows(config))
    index = draw(st.integers(0, len(rows) - 1))
    column = draw(st.sampled_from(config["input"]["columns"]))
    what, value = draw(st.sampled_from(breakages(column)))
    if what == "null" and draw(st.booleans()):
        del rows[index][column["name"]]  # missing instead of null
    else:
        rows[index][column["name"]] = value
    return rows, index, column["name"]


def test_invalid_rows_get_a_4xx_naming_row_and_field(served: Served) -> None:
    @SETTINGS
    @given(case=one_broken_field(served.config))
    def check(case: tuple[list, int, str]) -> None:
        rows, index, field = case
        response = post(served, rows)
        assert 400 <= response.status_code < 500, response.text
        error = response.json()["error"]
        named = {(d["row"], d["field"]) for d in error["details"]}
        # A key missing in one row only is named for that row; missing everywhere, by column.
        assert (index, field) in named or (None, field) in named, (case, error)

    check()
