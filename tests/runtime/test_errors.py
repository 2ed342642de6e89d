"""Bad input never gets a 500: every error class has its status and the common JSON shape,
and the server keeps serving after each of them."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path
from typing import Any

import pytest
import requests
from protocols.oip import input_tensors

from runtime.conftest import ServerFactory
from runtime.server import NativeServer

SCRIPTS = Path(__file__).parent / "scripts"
ERROR_KEYS = {"status", "code", "message", "request_id", "details"}


def strict_config(config: dict[str, Any]) -> None:
    """Boston plus optional typed columns, extra columns rejected, small limits, a script."""
    config["input"]["columns"] += [
        {
            "name": "species",
            "type": "factor",
            "required": False,
            "min": None,
            "max": None,
            "levels": ["a", "b"],
            "allowed": None,
        },
        {
            "name": "city",
            "type": "string",
            "required": False,
            "min": None,
            "max": None,
            "levels": None,
            "allowed": ["x", "y"],
        },
        {
            "name": "flag",
            "type": "boolean",
            "required": False,
            "min": None,
            "max": None,
            "levels": None,
            "allowed": None,
        },
    ]
    config["input"]["extra_columns"] = "reject"
    config["input"]["max_rows"] = 5
    config["scoring"]["script"] = str(SCRIPTS / "strict_score.R")


@pytest.fixture(scope="module")
def strict_server(server_factory: ServerFactory) -> NativeServer:
    # The body limit comes from the environment, as the chart's server.maxBodyBytes sets it.
    return server_factory(strict_config, env={"RMP_WORKERS": "1", "RMP_MAX_BODY_BYTES": "8192"})


@pytest.fixture(scope="module")
def rows(r_predictions: dict) -> list[dict[str, Any]]:
    """Five Boston rows without the target column."""
    return [{k: v for k, v in row.items() if k != "medv"} for row in r_predictions["rows"][:5]]


def assert_error(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == ERROR_KEYS
    assert error["status"] == status
    assert error["code"] == code
    assert error["request_id"] == response.headers["X-Request-Id"]
    assert "Traceback" not in error["message"] and "\n  at " not in error["message"]
    return error


def problems(error: dict[str, Any]) -> set[tuple[Any, str]]:
    return {(detail["row"], detail["field"]) for detail in error["details"]}


def post_json(server: NativeServer, path: str, body: Any) -> requests.Response:
    return requests.post(server.url(path), json=body, timeout=30)


def still_serving(server: NativeServer, rows: list[dict[str, Any]]) -> None:
    response = post_json(server, "/predict", rows[:1])
    assert response.status_code == 200, response.text


def test_malformed_json_is_400(boston_server: NativeServer, rows: list) -> None:
    response = requests.post(
        boston_server.url("/predict"),
        data=b'[{"crim": 1,',
        timeout=30,
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, 400, "malformed_json")
    still_serving(boston_server, rows)


def test_empty_body_is_400(boston_server: NativeServer, rows: list) -> None:
    response = requests.post(
        boston_server.url("/score"),
        data=b"",
        timeout=30,
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, 400, "malformed_json")


def test_wrong_content_type_is_415(boston_server: NativeServer, rows: list) -> None:
    response = requests.post(
        boston_server.url("/predict"),
        data="crim=1",
        timeout=30,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_error(response, 415, "unsupported_media_type")
    still_serving(boston_server, rows)


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/json-seq", 415),
        ("application/json, text/plain", 415),
        ("application/jsonp", 415),
        ("text/json", 415),
        ("application/json; charset=utf-8", 200),
        ("Application/JSON ;charset=UTF-8", 200),
        ("application/vnd.api+json", 200),
    ],
)
def test_only_json_media_types_are_read_as_json(
    boston_server: NativeServer, rows: list, content_type: str, status: int
) -> None:
    response = requests.post(
        boston_server.url("/predict"),
        data=json.dumps(rows[:1]),
        timeout=30,
        headers={"Content-Type": content_type},
    )
    if status == 415:
        assert_error(response, 415, "unsupported_media_type")
    else:
        assert response.status_code == 200, response.text


def post_compressed(server: NativeServer, path: str, body: Any, encoding: str) -> requests.Response:
    headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
    data = gzip.compress(json.dumps(body).encode())
    return requests.post(server.url(path), data=data, headers=headers, timeout=30)


@pytest.mark.parametrize("path", ["/predict", "/score"])
@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br, gzip"])
def test_a_compressed_body_is_415_naming_the_encoding(
    boston_server: NativeServer, rows: list, path: str, encoding: str
) -> None:
    """Its bytes were parsed as JSON before: gzip's header has a NUL, so the client was told its
    JSON held a NUL byte."""
    response = post_compressed(boston_server, path, {"df": rows}, encoding)
    error = assert_error(response, 415, "unsupported_media_type")
    assert f"Content-Encoding {encoding} is not supported" in error["message"]
    still_serving(boston_server, rows)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/models/boston-rf:predict", {"instances": [{"crim": 1}]}),
        ("/v2/models/boston-rf/infer", {"inputs": []}),
    ],
)
def test_the_protocol_routes_refuse_a_compressed_body_too(
    boston_server: NativeServer, rows: list, path: str, body: dict
) -> None:
    response = post_compressed(boston_server, path, body, "gzip")
    assert response.status_code == 415, response.text
    assert "Content-Encoding gzip is not supported" in response.json()["error"]
    still_serving(boston_server, rows)


def test_identity_content_encoding_is_plain_json(boston_server: NativeServer, rows: list) -> None:
    headers = {"Content-Type": "application/json", "Content-Encoding": "identity"}
    response = requests.post(
        boston_server.url("/predict"), data=json.dumps(rows[:2]), headers=headers, timeout=30
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 2


@pytest.mark.parametrize("path", ["/predict", "/score"])
def test_a_key_twice_in_a_row_is_422_naming_row_and_key(
    boston_server: NativeServer, rows: list, path: str
) -> None:
    """jsonlite kept the first of the two values, Python's and Go's parsers keep the last: what a
    proxy checked could differ from what the model scored."""
    first = json.dumps(rows[0])
    twice = '{"crim": 1.5, ' + json.dumps(rows[1])[1:]
    body = f'{{"df": [{first}, {twice}]}}' if path == "/score" else f"[{first}, {twice}]"
    response = requests.post(
        boston_server.url(path),
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    error = assert_error(response, 422, "invalid_input")
    assert error["details"] == [
        {
            "row": 1,
            "field": "crim",
            "problem": "the key appears more than once in this row; send it once",
        }
    ]
    still_serving(boston_server, rows)


@pytest.mark.parametrize(
    ("path", "key", "status"),
    [
        ("/predict", "data", 422),
        ("/score", "df", 422),
        # The protocol routes answer every bad request 400, in the protocol's error shape.
        ("/v1/models/boston-rf:predict", "instances", 400),
        ("/v2/models/boston-rf/infer", "inputs", 400),
    ],
)
def test_a_key_twice_in_the_body_object_is_refused(
    boston_server: NativeServer, rows: list, path: str, key: str, status: int
) -> None:
    """{"data": [good], "data": [other]}: which array is scored must not depend on the parser."""
    first, second = json.dumps([rows[0]]), json.dumps([rows[1]])
    body = f'{{"{key}": {first}, "{key}": {second}}}'
    response = requests.post(
        boston_server.url(path), data=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert response.status_code == status, response.text
    assert f'the key \\"{key}\\" appears more than once' in response.text
    still_serving(boston_server, rows)


def test_a_key_twice_in_a_v2_tensor_is_400(boston_server: NativeServer, rows: list) -> None:
    tensors = [
        f'{{"name": "{name}", "shape": [1], "datatype": "FP64", "data": [{value}]}}'
        for name, value in rows[0].items()
    ]
    tensors[0] = tensors[0].replace('"data"', '"data": [99.0], "data"')
    response = requests.post(
        boston_server.url("/v2/models/boston-rf/infer"),
        data=f'{{"inputs": [{", ".join(tensors)}]}}',
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == 'inputs[0] has the key "data" more than once; send it once'
    still_serving(boston_server, rows)


def test_a_body_without_content_type_is_read_as_json(
    boston_server: NativeServer, rows: list
) -> None:
    # requests sends no Content-Type for raw bytes; the R side accepts that, so the front must too.
    response = requests.post(boston_server.url("/predict"), data=json.dumps(rows[:1]), timeout=30)
    assert "Content-Type" not in response.request.headers
    assert response.status_code == 200, response.text


def test_body_over_the_limit_is_413(strict_server: NativeServer, rows: list) -> None:
    response = post_json(strict_server, "/predict", {"data": rows, "padding": "x" * 10000})
    assert_error(response, 413, "body_too_large")
    still_serving(strict_server, rows)


def test_nginx_answers_are_counted_in_metrics(strict_server: NativeServer, rows: list) -> None:
    """413 for a body over the limit never reaches R; /metrics still counts it."""
    key = 'rmp_requests_total{route="/predict",method="POST",status="413"}'

    def count() -> float:
        for line in requests.get(strict_server.url("/metrics"), timeout=10).text.splitlines():
            if line.startswith(key):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = count()
    for _ in range(3):
        response = post_json(strict_server, "/predict", {"data": rows, "padding": "x" * 10000})
        assert response.status_code == 413
    assert count() == before + 3


def test_more_rows_than_max_rows_is_413(strict_server: NativeServer, rows: list) -> None:
    error = assert_error(
        post_json(strict_server, "/predict", rows + rows[:1]), 413, "too_many_rows"
    )
    assert "6" in error["message"] and "5" in error["message"]
    still_serving(strict_server, rows)


def test_missing_columns_are_listed(boston_server: NativeServer, rows: list) -> None:
    broken = [{k: v for k, v in row.items() if k not in {"crim", "lstat"}} for row in rows]
    error = assert_error(post_json(boston_server, "/score", {"df": broken}), 422, "invalid_input")
    assert problems(error) == {(None, "crim"), (None, "lstat")}
    still_serving(boston_server, rows)


def test_wrong_types_name_every_row_and_field(boston_server: NativeServer, rows: list) -> None:
    broken = copy.deepcopy(rows)
    broken[0]["crim"] = "high"
    broken[2]["zn"] = True
    broken[3]["rm"] = [6.5]
    broken[4]["nox"] = None
    error = assert_error(post_json(boston_server, "/predict", broken), 422, "invalid_input")
    assert problems(error) == {(0, "crim"), (2, "zn"), (3, "rm"), (4, "nox")}
    by_field = {detail["field"]: detail["problem"] for detail in error["details"]}
    assert by_field["crim"] == "expected number, got string"
    assert by_field["zn"] == "expected number, got boolean"
    still_serving(boston_server, rows)


def test_out_of_range_and_non_integer_values(boston_server: NativeServer, rows: list) -> None:
    broken = copy.deepcopy(rows)
    broken[1]["chas"] = 2
    broken[3]["rad"] = 0
    broken[3]["crim"] = -1.5
    broken[4]["rad"] = 2.5
    error = assert_error(post_json(boston_server, "/predict", broken), 422, "invalid_input")
    assert problems(error) == {(1, "chas"), (3, "rad"), (3, "crim"), (4, "rad")}
    still_serving(boston_server, rows)


def test_unknown_levels_and_disallowed_values(strict_server: NativeServer, rows: list) -> None:
    broken = copy.deepcopy(rows)
    broken[0]["species"] = "c"
    broken[1]["species"] = "a"
    broken[2]["city"] = "z"
    broken[3]["flag"] = "yes"
    error = assert_error(post_json(strict_server, "/predict", broken), 422, "invalid_input")
    assert problems(error) == {(0, "species"), (2, "city"), (3, "flag")}
    still_serving(strict_server, rows)


def test_numbers_and_booleans_among_strings_are_named(
    strict_server: NativeServer, rows: list
) -> None:
    """unlist() would turn 5 into "5"; the validator must still see a number."""
    broken = copy.deepcopy(rows)
    broken[1]["city"] = 5
    broken[2]["city"] = "x"
    broken[3]["species"] = True
    error = assert_error(post_json(strict_server, "/predict", broken), 422, "invalid_input")
    by_row = {(d["row"], d["field"]): d["problem"] for d in error["details"]}
    assert by_row == {
        (1, "city"): "expected string, got number",
        (3, "species"): "expected string, got boolean",
    }


def test_typed_optional_columns_are_accepted(strict_server: NativeServer, rows: list) -> None:
    extended = copy.deepcopy(rows)
    extended[0].update(species="b", city="x", flag=True)
    response = post_json(strict_server, "/predict", extended)
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == len(rows)


def test_extra_columns_are_ignored_by_default(boston_server: NativeServer, rows: list) -> None:
    extended = [{**row, "medv": 24.0, "note": "whole row"} for row in rows]
    response = post_json(boston_server, "/predict", extended)
    assert response.status_code == 200, response.text


def test_extra_columns_are_rejected_when_strict(strict_server: NativeServer, rows: list) -> None:
    extended = [{**row, "medv": 24.0} for row in rows]
    error = assert_error(post_json(strict_server, "/predict", extended), 422, "invalid_input")
    assert problems(error) == {(None, "medv")}


@pytest.mark.parametrize("body", [{}, 5, [1, 2], {"data": "x"}, {"data": {}}])
def test_bodies_without_rows_are_422(boston_server: NativeServer, body: Any) -> None:
    assert_error(post_json(boston_server, "/predict", body), 422, "invalid_input")


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/predict", [], {"predictions": []}),
        ("/predict", {"data": []}, {"predictions": []}),
        ("/score", {"df": []}, []),
    ],
)
def test_no_rows_get_no_predictions(
    boston_server: NativeServer, path: str, body: Any, expected: Any
) -> None:
    """What /openapi.json allows (an empty array of rows) is a 200, not a 422."""
    response = post_json(boston_server, path, body)
    assert response.status_code == 200, response.text
    assert response.json() == expected


def test_score_needs_the_df_key(boston_server: NativeServer, rows: list) -> None:
    assert_error(post_json(boston_server, "/score", {"data": rows}), 422, "invalid_input")


def test_error_in_scoring_code_is_500_without_trace(
    strict_server: NativeServer, rows: list
) -> None:
    broken = copy.deepcopy(rows)
    broken[1]["crim"] = 99
    response = requests.post(
        strict_server.url("/predict"),
        json=broken,
        timeout=30,
        headers={"X-Request-Id": "trace-me-123"},
    )
    error = assert_error(response, 500, "scoring_error")
    assert error["request_id"] == "trace-me-123"
    assert "failure trigger" not in response.text
    log = strict_server.stderr_path.read_text()
    assert "trace-me-123" in log and "failure trigger" in log and "  at " in log
    still_serving(strict_server, rows)


@pytest.mark.parametrize(
    ("crim", "words"),
    [(98, "character values"), (97, "Inf"), (96, "NaN"), (95, "factor values")],
)
@pytest.mark.parametrize("route", ["/predict", "/v2/models/boston-rf/infer"])
def test_predictions_json_cannot_carry_are_500_not_nulls(
    strict_server: NativeServer, boston_config: dict, rows: list, crim: int, words: str, route: str
) -> None:
    odd = [{**rows[0], "crim": crim}, rows[1]]
    columns = boston_config["input"]["columns"]
    body = odd if route == "/predict" else {"inputs": input_tensors(odd, columns)}
    response = post_json(strict_server, route, body)
    if route == "/predict":
        message = assert_error(response, 500, "scoring_error")["message"]
    else:  # the protocol's own error shape: {"error": message, ...}
        assert response.status_code == 500, response.text
        message = response.json()["error"]
    assert words in message, message
    still_serving(strict_server, rows)


def test_a_missing_prediction_is_null(strict_server: NativeServer, rows: list) -> None:
    response = post_json(strict_server, "/predict", [{**rows[0], "crim": 94}, rows[1]])
    assert response.status_code == 200, response.text
    first, second = response.json()["predictions"]
    assert first is None and isinstance(second, float)


def test_unknown_route_is_404(boston_server: NativeServer) -> None:
    assert_error(requests.get(boston_server.url("/nope"), timeout=10), 404, "not_found")


def test_wrong_method_is_405(boston_server: NativeServer) -> None:
    assert_error(requests.get(boston_server.url("/predict"), timeout=10), 405, "method_not_allowed")


def test_a_nul_byte_in_the_body_is_400(boston_server: NativeServer, rows: list) -> None:
    body = json.dumps(rows[:1]).encode().replace(b"[{", b'[{"x\x00": 1, ', 1)
    response = requests.post(
        boston_server.url("/predict"),
        data=body,
        timeout=30,
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, 400, "malformed_json")
    still_serving(boston_server, rows)


@pytest.mark.parametrize(
    ("field", "text", "problem"),
    [
        ("chas", "3000000000", "outside the integer range"),
        ("rad", "-3000000000.0", "outside the integer range"),
        ("crim", "1e400", "must be a finite number"),
        ("chas", "1e400", "must be a finite number"),
    ],
)
def test_numbers_r_cannot_hold_are_422(
    boston_server: NativeServer, rows: list, field: str, text: str, problem: str
) -> None:
    row = json.dumps(rows[0])
    body = row.replace(f'"{field}": {json.dumps(rows[0][field])}', f'"{field}": {text}', 1)
    assert body != row
    response = requests.post(
        boston_server.url("/predict"),
        data=f"[{json.dumps(rows[1])}, {body}]",
        timeout=30,
        headers={"Content-Type": "application/json"},
    )
    error = assert_error(response, 422, "invalid_input")
    assert {"row": 1, "field": field, "problem": problem} in [
        {k: d[k] if k != "problem" else d[k][: len(problem)] for k in ("row", "field", "problem")}
        for d in error["details"]
    ], error["details"]
    still_serving(boston_server, rows)
