"""Bodies a fuzzer or a hostile client sends that are JSON only in part: deep nesting, bytes that
are not UTF-8, thousands of problems at once, and preconditions on the front's own routes. Each
gets the one JSON error shape, costs the worker no lasting memory, and every answer is valid
UTF-8 JSON."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from adversarial.conftest import Served, ServeExample, assert_json_error, every_worker_serves

pytestmark = [pytest.mark.r]

JSON = {"Content-Type": "application/json"}
# 400,000 levels (800 KB, under max_body_bytes): past R's protect stack, where jsonlite's parse
# tree was never freed (20-40 MB of a worker per request).
VERY_DEEP = b"[" * 400_000 + b"]" * 400_000


@pytest.fixture(scope="module")
def boston(serve_example: ServeExample) -> Served:
    return serve_example("boston-rf")


def post(served: Served, path: str, body: bytes, headers: dict[str, str] | None = None):
    return requests.post(served.url(path), data=body, headers=headers or JSON, timeout=60)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def strict_json(response: requests.Response) -> dict:
    """What a strict client reads: UTF-8 (errors raise) and then JSON."""
    return json.loads(response.content.decode("utf-8"))


def v2_infer(served: Served) -> str:
    return f"/v2/models/{served.name}/infer"


def test_deep_nesting_is_refused_before_parsing_and_costs_no_memory(boston: Served) -> None:
    pids = boston.server.worker_pids()
    before = {worker: rss_mib(pid) for worker, pid in pids.items()}
    responses = [
        post(boston, path, VERY_DEEP) for path in ("/predict", "/score", v2_infer(boston)) * 3
    ]
    # Past the idle collection (1 s): what is left is what the requests kept.
    time.sleep(2)
    assert boston.server.worker_pids() == pids
    grown = {worker: rss_mib(pid) - before[worker] for worker, pid in pids.items()}
    assert all(mib < 40 for mib in grown.values()), grown
    for response in responses:
        # v2 has the protocol's own error shape ({"error": message, ...}).
        assert response.status_code == 400, response.text
        assert "nested more than 64 deep" in json.dumps(strict_json(response)), response.text
    every_worker_serves(boston)


def test_nesting_up_to_the_limit_still_parses(boston: Served) -> None:
    """64 levels are JSON like any other: this body is refused for its content (422), not its
    depth, while one more level is a 400 naming the depth."""
    inner = b"[" * 62 + b"1" + b"]" * 62
    response = post(boston, "/predict", b'[{"crim": ' + inner + b"}]")
    assert response.status_code == 422, response.text
    deeper = b'[{"crim": ' + b"[" * 63 + b"1" + b"]" * 63 + b"}]"
    response = post(boston, "/predict", deeper)
    assert response.status_code == 400, response.text
    # Brackets inside strings are text, not nesting.
    text = json.dumps([{"crim": "[" * 1000 + "{" * 1000}]).encode()
    assert post(boston, "/predict", text).status_code == 422


def test_a_deeply_nested_v2_shape_is_a_400(boston: Served) -> None:
    shape = b"[" * 200 + b"]" * 200
    body = b'{"inputs":[{"name":"crim","datatype":"FP64","shape":' + shape + b',"data":[1]}]}'
    response = post(boston, v2_infer(boston), body)
    assert response.status_code == 400, response.text
    assert strict_json(response)["error"]


@pytest.mark.parametrize(
    "bad",
    [
        b"\xc0\x80",  # an overlong NUL
        b"\xed\xa0\x80",  # an encoded surrogate
        b"\xf4\x90\x80\x80",  # past U+10FFFF
        b"\xf8\x88\x80\x80\x80",  # a five-byte form
        b"\xff",
    ],
)
def test_bytes_that_are_not_utf8_are_refused_and_never_echoed(boston: Served, bad: bytes) -> None:
    bodies = {
        "/predict": b'{"' + bad + b'":1,"' + bad + b'":2}',
        "/score": b'{"df":[{"crim":"' + bad + b'"}]}',
        v2_infer(boston): b'{"id":"' + bad + b'","inputs":[],"outputs":[{"name":"' + bad + b'"}]}',
    }
    for path, body in bodies.items():
        response = post(boston, path, body)
        assert response.status_code == 400, (path, response.content[:300])
        answer = strict_json(response)
        assert "not valid UTF-8" in json.dumps(answer), (path, answer)
        assert bad not in response.content


def test_comments_are_refused_and_slashes_in_strings_are_text(boston: Served) -> None:
    """yajl takes comments; a proxy that checked the body as JSON would have refused it or read
    something else."""
    rows = json.dumps(boston.rows[:1]).encode()
    for body in (b"/* c */" + rows, rows + b" // c", rows[:-1] + b"/* ] */]"):
        response = post(boston, "/predict", body)
        error = assert_json_error(response.status_code, response.headers, response.content, 400)
        assert "JSON has no comments" in error["message"], (body, error)
    noted = [dict(boston.rows[0], note="http://example.com/a//b /* not a comment */")]
    assert post(boston, "/predict", json.dumps(noted).encode()).status_code == 200


def test_a_string_left_open_after_the_value_is_refused(boston: Served) -> None:
    """yajl took a value followed by an unclosed string; other parsers call it extra data."""
    rows = json.dumps({"data": boston.rows[:1]}).encode()
    for body in (rows + b'" {data: [{x: 2}]}', rows + b' "', b'{"data": "\\"}"'):
        response = post(boston, "/predict", body)
        error = assert_json_error(response.status_code, response.headers, response.content, 400)
        assert "not closed" in error["message"] or "parse error" in error["message"], error


def test_valid_utf8_keys_and_ids_still_work(boston: Served) -> None:
    row = dict(boston.rows[0], **{"ünïcödé 🙂": 1})
    response = post(boston, "/predict", json.dumps([row], ensure_ascii=False).encode())
    assert response.status_code == 200, response.text


def test_thousands_of_problems_list_the_first_hundred_and_count_them_all(boston: Served) -> None:
    columns = [column["name"] for column in boston.config["input"]["columns"]]
    rows = [{name: "wrong" for name in columns} for _ in range(1000)]
    response = post(boston, "/predict", json.dumps(rows).encode())
    error = assert_json_error(response.status_code, response.headers, response.content, 422)
    assert len(error["details"]) == 100
    assert error["message"].startswith(f"{1000 * len(columns)} problem(s) in the input")
    assert "the first 100 are listed" in error["message"]
    assert error["details"][0] == {
        "row": 0,
        "field": columns[0],
        "problem": "expected number, got string",
    }
    # A few problems are all listed, with no "first" in the message.
    response = post(boston, "/predict", json.dumps([{columns[0]: "wrong"}]).encode())
    error = assert_json_error(response.status_code, response.headers, response.content, 422)
    assert len(error["details"]) == len(columns)
    assert "first" not in error["message"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/"])
@pytest.mark.parametrize(
    "header",
    [{"If-Match": '"x"'}, {"If-Unmodified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}],
)
def test_a_failed_precondition_on_the_fronts_routes_is_a_json_412(
    boston: Served, path: str, header: dict[str, str]
) -> None:
    response = requests.get(boston.url(path), headers=header, timeout=10)
    error = assert_json_error(response.status_code, response.headers, response.content, 412)
    assert error["code"] == "precondition_failed"


def test_the_readiness_routes_document_their_503(boston: Served) -> None:
    paths = requests.get(boston.url("/openapi.json"), timeout=10).json()["paths"]
    model = boston.name
    for path in ("/readyz", "/v2/health/ready", f"/v2/models/{model}/ready", f"/v1/models/{model}"):
        assert "503" in paths[path]["get"]["responses"], path
