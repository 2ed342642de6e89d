"""The JSON escape \\u0000 in a string, through nginx to the R workers, on every JSON route.

jsonlite ends a string at \\u0000 ("Front\\u0000x" parses as "Front"), and no R string can
hold a NUL, so such a body would silently score another value: it is a 400 malformed_json that
names the escape. An escaped backslash before the text u0000 ("\\\\u0000") is legal JSON for
a backslash followed by "u0000" and is taken as such.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from protocols.oip import example_config, input_tensors, sample_rows, start_example_server

from runtime.server import NativeServer

pytestmark = [pytest.mark.r]

CARS = "cars93-ranger"
FACTOR = "drive_train"  # levels 4WD, Front, Rear

Body = Callable[[list[dict[str, Any]]], tuple[str, Any]]


def _predict(rows: list[dict[str, Any]]) -> tuple[str, Any]:
    return "/predict", rows


def _score(rows: list[dict[str, Any]]) -> tuple[str, Any]:
    return "/score", {"df": rows}


def _v2_infer(rows: list[dict[str, Any]]) -> tuple[str, Any]:
    columns = example_config(CARS)["input"]["columns"]
    return f"/v2/models/{CARS}/infer", {"inputs": input_tensors(rows, columns)}


def _v1_predict(rows: list[dict[str, Any]]) -> tuple[str, Any]:
    return f"/v1/models/{CARS}:predict", {"instances": rows}


ROUTES = {"predict": _predict, "score": _score, "v2-infer": _v2_infer, "v1-predict": _v1_predict}


@pytest.fixture(scope="module")
def cars_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeServer]:
    server = start_example_server(CARS, tmp_path_factory.mktemp("cars-nul"))
    yield server
    server.kill()


def rows_with(**values: str) -> list[dict[str, Any]]:
    rows = copy.deepcopy(sample_rows(CARS)[:3])
    rows[1].update(values)
    return rows


def post(server: NativeServer, make_body: Body, rows: list[dict[str, Any]]) -> requests.Response:
    path, body = make_body(rows)
    # json.dumps writes a NUL character as the escape \u0000 (ensure_ascii).
    text = json.dumps(body)
    return requests.post(
        server.url(path), data=text, headers={"Content-Type": "application/json"}, timeout=30
    )


def error_of(response: requests.Response) -> tuple[str, str]:
    """(code, message) from rmodelpack's error shape or the protocols' {"error": "..."}."""
    body = response.json()
    if isinstance(body["error"], dict):
        return body["error"]["code"], body["error"]["message"]
    return body["code"], body["error"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "value",
    ["Front\x00Rear", "\x00", "Front\x00", "\\\x00"],
    ids=["inside", "alone", "trailing", "after-an-escaped-backslash"],
)
def test_a_nul_escape_in_a_string_is_400_on_every_json_route(
    cars_server: NativeServer, route: str, value: str
) -> None:
    rows = rows_with(**{FACTOR: value})
    assert "\\u0000" in json.dumps(rows)
    response = post(cars_server, ROUTES[route], rows)
    assert response.status_code == 400, response.text
    code, message = error_of(response)
    assert code == "malformed_json"
    assert "\\u0000" in message and "NUL" in message


@pytest.mark.parametrize("route", ["predict", "v1-predict"])
def test_a_nul_escape_in_a_key_is_400(cars_server: NativeServer, route: str) -> None:
    rows = rows_with()
    rows[0][f"{FACTOR}\x00x"] = "Rear"
    response = post(cars_server, ROUTES[route], rows)
    assert response.status_code == 400, response.text
    assert error_of(response)[0] == "malformed_json"


@pytest.mark.parametrize("route", ROUTES)
def test_an_escaped_backslash_then_u0000_is_a_legal_string(
    cars_server: NativeServer, route: str
) -> None:
    """ "Front\\\\u0000" is the text Front\\u0000: not a level, never cut to "Front"."""
    rows = rows_with(**{FACTOR: "Front\\u0000"})
    assert '"Front\\\\u0000"' in json.dumps(rows)
    response = post(cars_server, ROUTES[route], rows)
    assert response.status_code in (400, 422), response.text
    code, message = error_of(response)
    assert code == "invalid_input", message
    assert FACTOR in json.dumps(response.json())


def test_an_escaped_backslash_then_u0000_scores_in_an_ignored_column(
    cars_server: NativeServer,
) -> None:
    plain = post(cars_server, _predict, rows_with())
    assert plain.status_code == 200, plain.text
    rows = rows_with(note="C:\\u0000\\\\u0000")  # extra columns are ignored by default
    response = post(cars_server, _predict, rows)
    assert response.status_code == 200, response.text
    assert response.json() == plain.json()
