"""The JSON escape \\u0000 in a string, through nginx to the R workers, on every JSON route.

jsonlite ends a string at \\u0000 ("Front\\u0000x" parses as "Front"), and no R string can
hold a NUL, so such a body would silently score another value: it is a 400 malformed_json that
names the escape. An escaped backslash before the text u0000 ("\\\\u0000") is legal JSON for
a backslash followed by "u0000" and is taken as such. A lone surrogate escape (yajl would
write "?" and swallow the next byte, or write bytes that are not UTF-8) is refused the same way.
"""

from __future__ import annotations

import copy
import json
import re
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


# A high surrogate escape not followed by a low one makes yajl write "?" and swallow the next
# byte: a backslash (so "\\\\u0000" became a live \u0000), a quote or a letter. A lone low
# surrogate becomes bytes that are not UTF-8. Either way the value would silently change.
# Each value with the index, among its surrogate escapes, of the one that is refused.
LONE_SURROGATES = {
    "high-then-escaped-nul": ("Fr\ud800\\u0000ont", 0),
    "high-then-escaped-u0041": ("a\ud800\\u0041b", 0),
    "high-then-quote": ('a\ud800"b', 0),
    "high-then-letter": ("Front\ud800x", 0),
    "high-at-the-end": ("Front\ud800", 0),
    "high-then-other-escape": ("a\ud800\xe9b", 0),
    "high-then-high-low": ("\ud800\ud83e\udd80", 0),
    "low-alone": ("Front\udc00", 0),
    "low-after-a-pair": ("\ud83e\udd80\udd80", 2),
}
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def surrogate_text(body: Any, upper: bool) -> str:
    text = json.dumps(body)  # writes each surrogate as a lowercase \uXXXX escape
    if upper:
        text = SURROGATE_ESCAPE.sub(lambda m: "\\u" + m.group()[2:].upper(), text)
    return text


def post_text(server: NativeServer, path: str, text: str | bytes) -> requests.Response:
    return requests.post(
        server.url(path), data=text, headers={"Content-Type": "application/json"}, timeout=60
    )


def assert_refused_surrogate(response: requests.Response, text: str, index: int) -> None:
    assert response.status_code == 400, response.text
    code, message = error_of(response)
    assert code == "malformed_json", message
    assert "surrogate" in message, message
    offset = list(SURROGATE_ESCAPE.finditer(text))[index].start()
    assert f"byte offset {offset}:" in message, message


@pytest.mark.parametrize("upper", [False, True], ids=["lowercase-hex", "uppercase-hex"])
@pytest.mark.parametrize("placement", ["value", "key"])
@pytest.mark.parametrize("route", ["predict", "v1-predict"])
@pytest.mark.parametrize("case", LONE_SURROGATES.values(), ids=LONE_SURROGATES.keys())
def test_a_lone_surrogate_escape_is_400(
    cars_server: NativeServer, route: str, placement: str, upper: bool, case: tuple[str, int]
) -> None:
    value, index = case
    rows = rows_with(**{FACTOR: value}) if placement == "value" else rows_with()
    if placement == "key":
        rows[1][f"note{value}"] = "x"  # an extra column, ignored: its key would be mangled
    path, body = ROUTES[route](rows)
    text = surrogate_text(body, upper)
    assert_refused_surrogate(post_text(cars_server, path, text), text, index)


def oip_body(request_id: str) -> dict[str, Any]:
    _, body = _v2_infer(rows_with())
    return {"id": request_id, **body}


@pytest.mark.parametrize("case", LONE_SURROGATES.values(), ids=LONE_SURROGATES.keys())
def test_a_lone_surrogate_in_the_echoed_oip_id_is_400(
    cars_server: NativeServer, case: tuple[str, int]
) -> None:
    value, index = case
    text = surrogate_text(oip_body(value), upper=False)
    response = post_text(cars_server, f"/v2/models/{CARS}/infer", text)
    assert_refused_surrogate(response, text, index)


@pytest.mark.parametrize("upper", [False, True], ids=["lowercase-hex", "uppercase-hex"])
def test_a_surrogate_pair_escape_is_the_character(cars_server: NativeServer, upper: bool) -> None:
    """ "\\ud83e\\udd80" is 🦀, the same as the UTF-8 character written as is."""
    crab = "Fr\U0001f980nt"
    escaped = surrogate_text(oip_body(crab), upper)
    assert ("\\uD83E\\uDD80" if upper else "\\ud83e\\udd80") in escaped
    literal = json.dumps(oip_body(crab), ensure_ascii=False).encode()
    assert crab.encode() in literal
    path = f"/v2/models/{CARS}/infer"
    from_escape = post_text(cars_server, path, escaped)
    from_literal = post_text(cars_server, path, literal)
    assert from_escape.status_code == 200, from_escape.text
    assert from_escape.json()["id"] == crab
    assert from_escape.json() == from_literal.json()


@pytest.mark.parametrize("route", ["predict", "v1-predict"])
def test_many_escaped_backslashes_are_text(cars_server: NativeServer, route: str) -> None:
    """~800 KB of escaped backslashes, then the texts u0000 and uD800: legal, and scored."""
    plain = post(cars_server, ROUTES[route], rows_with())
    assert plain.status_code == 200, plain.text
    rows = rows_with(note="\\" * 400_000 + "u0000\\uD800x")
    response = post(cars_server, ROUTES[route], rows)
    assert response.status_code == 200, response.text
    assert response.json() == plain.json()


def test_a_nul_escape_after_many_escaped_backslashes_is_400_at_its_offset(
    cars_server: NativeServer,
) -> None:
    path, body = _predict(rows_with(note="\\" * 400_000 + "\x00"))
    text = json.dumps(body)
    offset = text.index("\\u0000", text.index('"note"'))
    assert text[offset - 400_000 * 2 - 1] == '"'  # a run of 800 000 backslashes, then \u0000
    response = post_text(cars_server, path, text)
    assert response.status_code == 400, response.text
    code, message = error_of(response)
    assert code == "malformed_json"
    assert "NUL" in message and f"byte offset {offset} " in message, message
