"""The Open Inference Protocol (v2), KServe v1 and ?type= on the native server, through nginx.

Ground truth is R's own predict() on the host; validation is the one /predict uses, so a bad
tensor is a 400 whose message names the column, never a 500.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from protocols.oip import (
    DATATYPES,
    assert_same,
    expected_tensors,
    input_tensors,
    r_predictions,
    sample_rows,
    start_example_server,
)

from rmodelpack import __version__
from runtime.server import NativeServer

pytestmark = [pytest.mark.r]

BOSTON = "boston-rf"
CARS = "cars93-ranger"


@pytest.fixture(scope="module")
def cars_server(tmp_path_factory) -> Iterator[NativeServer]:
    server = start_example_server(CARS, tmp_path_factory.mktemp("cars"))
    yield server
    server.kill()


@pytest.fixture(scope="module")
def cars_truth(tmp_path_factory) -> dict[str, Any]:
    rows = sample_rows(CARS)
    return {"rows": rows, **r_predictions(CARS, rows, tmp_path_factory.mktemp("cars-r"))}


def post(server: NativeServer, path: str, body: Any) -> requests.Response:
    return requests.post(server.url(path), json=body, timeout=30)


def get(server: NativeServer, path: str) -> requests.Response:
    return requests.get(server.url(path), timeout=10)


def outputs_by_name(body: dict[str, Any]) -> dict[str, list[Any]]:
    return {output["name"]: output["data"] for output in body["outputs"]}


# --- health and metadata -------------------------------------------------------------------------


def test_server_health_and_metadata(boston_server: NativeServer) -> None:
    assert get(boston_server, "/v2/health/live").json() == {"live": True}
    assert get(boston_server, "/v2/health/ready").json() == {"ready": True}
    server = get(boston_server, "/v2").json()
    assert server == {"name": "rmodelpack", "version": __version__, "extensions": []}


@pytest.mark.parametrize("path", ["/v2/models/boston-rf", "/v2/models/boston-rf/versions/1.0.0"])
def test_model_metadata_lists_one_tensor_per_column(
    boston_server: NativeServer, boston_config: dict, path: str
) -> None:
    body = get(boston_server, path).json()
    assert body["name"] == "boston-rf"
    assert body["versions"] == [boston_config["version"]]
    assert body["inputs"] == [
        {"name": c["name"], "datatype": DATATYPES[c["type"]], "shape": [-1]}
        for c in boston_config["input"]["columns"]
    ]
    assert body["outputs"] == [{"name": "predictions", "datatype": "FP64", "shape": [-1]}]
    assert get(boston_server, f"{path}/ready").status_code == 200


def test_classifier_metadata_lists_class_and_one_probability_per_class(
    cars_server: NativeServer, cars_truth: dict
) -> None:
    body = get(cars_server, "/v2/models/cars93-ranger").json()
    outputs = {o["name"]: o["datatype"] for o in body["outputs"]}
    assert outputs == {"class": "BYTES", **{f"prob_{c}": "FP64" for c in cars_truth["classes"]}}
    factor = next(i for i in body["inputs"] if i["name"] == "drive_train")
    assert factor == {"name": "drive_train", "datatype": "BYTES", "shape": [-1]}


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/v2/models/other", "model_not_found"),
        ("/v2/models/boston-rf/versions/2.0.0", "model_version_not_found"),
        ("/v2/models/boston-rf/versions/2.0.0/ready", "model_version_not_found"),
        ("/v1/models/other", "model_not_found"),
    ],
)
def test_other_models_and_versions_are_404(boston_server: NativeServer, path: str, code: str):
    response = get(boston_server, path)
    assert response.status_code == 404
    body = response.json()
    assert isinstance(body["error"], str) and body["code"] == code


# --- inference -----------------------------------------------------------------------------------


@pytest.mark.parametrize("version_path", ["", "/versions/1.0.0"])
def test_infer_equals_r_predict(
    boston_server: NativeServer, boston_config: dict, r_predictions: dict, version_path: str
) -> None:
    rows = r_predictions["rows"]
    request = {"id": "req-7", "inputs": input_tensors(rows, boston_config["input"]["columns"])}

    response = post(boston_server, f"/v2/models/boston-rf{version_path}/infer", request)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model_name"], body["model_version"], body["id"]) == (
        "boston-rf",
        "1.0.0",
        "req-7",
    )
    assert body["outputs"][0]["shape"] == [len(rows)]
    assert body["outputs"][0]["datatype"] == "FP64"
    assert_same(outputs_by_name(body), {"predictions": r_predictions["predictions"]})


def test_infer_on_another_version_is_404(boston_server, boston_config, r_predictions) -> None:
    request = {
        "inputs": input_tensors(r_predictions["rows"][:2], boston_config["input"]["columns"])
    }
    response = post(boston_server, "/v2/models/boston-rf/versions/0.9/infer", request)
    assert response.status_code == 404
    assert "0.9" in response.json()["error"]


def test_classifier_infer_gives_class_and_probabilities_equal_to_r(
    cars_server: NativeServer, cars_truth: dict
) -> None:
    columns = _cars_columns(cars_server)
    request = {"inputs": input_tensors(cars_truth["rows"], columns)}

    response = post(cars_server, "/v2/models/cars93-ranger/infer", request)

    assert response.status_code == 200, response.text
    assert_same(outputs_by_name(response.json()), expected_tensors(cars_truth))


def test_outputs_in_the_request_select_the_tensors(cars_server, cars_truth) -> None:
    first = f"prob_{cars_truth['classes'][0]}"
    request = {
        "inputs": input_tensors(cars_truth["rows"], _cars_columns(cars_server)),
        "outputs": [{"name": first}, {"name": "class"}],
    }
    body = post(cars_server, "/v2/models/cars93-ranger/infer", request).json()
    assert [o["name"] for o in body["outputs"]] == [first, "class"]

    request["outputs"] = [{"name": "colour"}]
    response = post(cars_server, "/v2/models/cars93-ranger/infer", request)
    assert response.status_code == 400
    assert "colour" in response.json()["error"] and first in response.json()["error"]


def _cars_columns(server: NativeServer) -> list[dict[str, Any]]:
    return get(server, "/metadata").json()["input"]["columns"]


def _boston_request(boston_config: dict, r_predictions: dict) -> dict[str, Any]:
    return {"inputs": input_tensors(r_predictions["rows"][:3], boston_config["input"]["columns"])}


def _infer_error(server: NativeServer, request: dict) -> dict[str, Any]:
    response = post(server, "/v2/models/boston-rf/infer", request)
    assert response.status_code == 400, response.text
    body = response.json()
    assert isinstance(body["error"], str)
    return body


def test_wrong_datatype_is_400_naming_the_column(boston_server, boston_config, r_predictions):
    request = _boston_request(boston_config, r_predictions)
    chas = next(t for t in request["inputs"] if t["name"] == "chas")
    chas.update(datatype="BYTES", data=["0", "0", "0"])
    body = _infer_error(boston_server, request)
    assert "chas" in body["error"] and "INT64" in body["error"]


def test_out_of_range_value_is_400_naming_column_and_row(
    boston_server, boston_config, r_predictions
):
    request = _boston_request(boston_config, r_predictions)
    next(t for t in request["inputs"] if t["name"] == "chas")["data"][1] = 7
    body = _infer_error(boston_server, request)
    assert "chas (row 1)" in body["error"]
    assert body["details"] == [{"row": 1, "field": "chas", "problem": "must be <= 1"}]


@pytest.mark.parametrize(
    ("column", "datatype", "value", "fits"),
    [
        ("rad", "INT64", 2.5, "whole numbers from -9223372036854775808 to 9223372036854775807"),
        ("rad", "UINT8", 256, "UINT8 (whole numbers from 0 to 255)"),
        ("rad", "INT8", -129, "INT8"),
        ("tax", "FP32", 1e300, "FP32 (numbers from -3.4028235e+38 to 3.4028235e+38)"),
        ("tax", "FP16", 70000, "FP16"),
    ],
)
def test_a_value_its_datatype_cannot_hold_is_400_naming_column_and_row(
    boston_server, boston_config, r_predictions, column, datatype, value, fits
):
    """Scored as the double it parsed to, 0.5 in an INT64 tensor would be a prediction for an
    input the client never had."""
    request = _boston_request(boston_config, r_predictions)
    tensor = next(t for t in request["inputs"] if t["name"] == column)
    tensor["datatype"] = datatype
    tensor["data"][2] = value
    body = _infer_error(boston_server, request)
    assert f"input '{column}'" in body["error"] and fits in body["error"], body
    assert [(d["row"], d["field"]) for d in body["details"]] == [(2, column)], body


def test_values_that_fit_a_narrower_datatype_are_scored_as_sent(
    boston_server, boston_config, r_predictions
):
    request = _boston_request(boston_config, r_predictions)
    next(t for t in request["inputs"] if t["name"] == "chas")["datatype"] = "UINT8"
    next(t for t in request["inputs"] if t["name"] == "rad")["datatype"] = "INT32"
    next(t for t in request["inputs"] if t["name"] == "crim")["datatype"] = "FP32"
    # An input the model does not take is left out unchecked (input.extra_columns ignore).
    request["inputs"].append({"name": "note", "datatype": "INT8", "shape": [3], "data": [300] * 3})
    response = requests.post(
        boston_server.url(f"/v2/models/{BOSTON}/infer"), json=request, timeout=30
    )
    assert response.status_code == 200, response.text


def test_missing_input_and_ragged_lengths_are_400(boston_server, boston_config, r_predictions):
    request = _boston_request(boston_config, r_predictions)
    request["inputs"] = [t for t in request["inputs"] if t["name"] != "lstat"]
    assert "lstat" in _infer_error(boston_server, request)["error"]

    ragged = copy.deepcopy(_boston_request(boston_config, r_predictions))
    ragged["inputs"][0]["data"].pop()
    ragged["inputs"][0]["shape"] = [2]
    assert "differ in length" in _infer_error(boston_server, ragged)["error"]


@pytest.mark.parametrize(
    "body",
    [
        {"inputs": []},
        {"data": [1]},
        [1, 2],
        {"inputs": [{"name": "crim"}]},
        # a shape beyond R's integer range (found by schemathesis; it was a 500)
        {"inputs": [{"name": "crim", "datatype": "FP64", "shape": [20922789888000], "data": [1]}]},
        {"inputs": [{"name": "crim", "datatype": "FP64", "shape": [1, 3], "data": [1, 2, 3]}]},
    ],
)
def test_malformed_requests_are_400_not_500(boston_server: NativeServer, body: Any) -> None:
    _infer_error(boston_server, body)


# --- KServe v1 -----------------------------------------------------------------------------------


def test_kserve_v1_model_and_predict(boston_server, boston_config, r_predictions) -> None:
    assert get(boston_server, "/v1/models/boston-rf").json() == {"name": "boston-rf", "ready": True}
    rows = r_predictions["rows"]
    response = post(boston_server, "/v1/models/boston-rf:predict", {"instances": rows})
    assert_same(response.json(), {"predictions": r_predictions["predictions"]})

    names = [c["name"] for c in boston_config["input"]["columns"]]
    arrays = [[row[name] for name in names] for row in rows]
    response = post(boston_server, "/v1/models/boston-rf:predict", {"instances": arrays})
    assert_same(response.json(), {"predictions": r_predictions["predictions"]})


def test_kserve_v1_bad_instance_is_400(boston_server: NativeServer) -> None:
    response = post(boston_server, "/v1/models/boston-rf:predict", {"instances": [[1, 2]]})
    assert response.status_code == 400
    assert "instances[0]" in response.json()["error"]


# --- the output type per request -----------------------------------------------------------------


def test_type_chooses_class_or_probabilities(cars_server, cars_truth) -> None:
    expected = expected_tensors(cars_truth)
    rows = cars_truth["rows"]
    classes = post(cars_server, "/predict?type=class", rows).json()["predictions"]
    assert classes == expected["class"]
    probabilities = post(cars_server, "/predict?type=prob", rows).json()["predictions"]
    assert_same(
        probabilities,
        [{c: expected[f"prob_{c}"][i] for c in cars_truth["classes"]} for i in range(len(rows))],
    )
    default = post(cars_server, "/predict", rows).json()["predictions"]
    assert [p["class"] for p in default] == expected["class"]
    v1 = post(cars_server, "/v1/models/cars93-ranger:predict?type=class", {"instances": rows})
    assert v1.json()["predictions"] == expected["class"]


def test_unknown_type_is_400_naming_the_allowed_ones(cars_server, cars_truth) -> None:
    response = post(cars_server, "/predict?type=raw", cars_truth["rows"])
    assert response.status_code == 400
    assert "class, prob" in response.json()["error"]["message"]


def test_type_on_a_regression_model_is_400(boston_server, r_predictions) -> None:
    response = post(boston_server, "/predict?type=class", r_predictions["rows"][:1])
    assert response.status_code == 400
    assert "classifiers" in response.json()["error"]["message"]


# --- OpenAPI, metrics, methods -------------------------------------------------------------------


def test_openapi_lists_the_protocol_routes_and_the_type_parameter(boston_server, cars_server):
    spec = get(boston_server, "/openapi.json").json()
    assert {
        "/v2/health/live",
        "/v2/health/ready",
        "/v2",
        "/v2/models/boston-rf",
        "/v2/models/boston-rf/ready",
        "/v2/models/boston-rf/infer",
        "/v2/models/boston-rf/versions/1.0.0/infer",
        "/v1/models/boston-rf",
        "/v1/models/boston-rf:predict",
    } <= set(spec["paths"])
    assert "parameters" not in spec["paths"]["/predict"]["post"]  # ?type= is for classifiers
    cars = get(cars_server, "/openapi.json").json()
    for path in ("/predict", "/score"):
        (parameter,) = cars["paths"][path]["post"]["parameters"]
        assert (parameter["name"], parameter["in"]) == ("type", "query")
        assert parameter["schema"]["enum"] == ["class", "prob"]
    shapes = cars["components"]["schemas"]["Prediction"]["oneOf"]
    assert [shape["type"] for shape in shapes] == ["object", "string", "object"]


def test_metrics_label_protocol_routes_by_pattern(boston_server, boston_config, r_predictions):
    post(boston_server, "/v2/models/boston-rf/infer", _boston_request(boston_config, r_predictions))
    get(boston_server, "/v2/models/nope")
    text = ""
    for _ in range(50):  # workers flush their counters within 0.2 s
        text = get(boston_server, "/metrics").text
        if 'route="/v2/models/<name>",method="GET",status="404"' in text:
            break
    assert 'route="/v2/models/<name>/infer",method="POST",status="200"' in text
    assert 'route="/v2/models/<name>",method="GET",status="404"' in text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/models/boston-rf/infer"),
        ("POST", "/v2/health/live"),
        ("GET", "/v1/models/boston-rf:predict"),
    ],
)
def test_wrong_method_on_a_protocol_route_is_405(boston_server, method: str, path: str) -> None:
    response = requests.request(method, boston_server.url(path), timeout=10)
    assert response.status_code == 405, response.text


# --- found by an adversarial review (each was a wrong 200, a repeated tensor or bad JSON) -------


def _boston_rows(r_predictions: dict, n: int = 2) -> list[dict[str, Any]]:
    return r_predictions["rows"][:n]


@pytest.mark.parametrize(
    "shape",
    [{"n": 3}, [[3]], [3, 2], [], ["3"], [True]],
    ids=["object", "nested", "not-n-by-1", "empty", "string", "boolean"],
)
def test_a_shape_that_is_not_an_array_of_whole_numbers_is_400(
    boston_server, boston_config, r_predictions, shape: Any
) -> None:
    request = _boston_request(boston_config, r_predictions)
    request["inputs"][0]["shape"] = shape
    assert "shape" in _infer_error(boston_server, request)["error"]


def test_objects_in_data_are_bad_values_not_unwrapped(boston_server, boston_config, r_predictions):
    request = _boston_request(boston_config, r_predictions)
    request["inputs"][0]["data"] = [{"a": 1}, {"b": 2}, {"c": 3}]
    body = _infer_error(boston_server, request)
    problem = {"row": 0, "field": "crim", "problem": "expected number, got object"}
    assert body["details"][0] == problem


def test_nested_row_major_data_is_still_accepted(boston_server, boston_config, r_predictions):
    rows = _boston_rows(r_predictions, 3)
    request = {"inputs": input_tensors(rows, boston_config["input"]["columns"])}
    for tensor in request["inputs"]:
        tensor.update(shape=[3, 1], data=[[value] for value in tensor["data"]])
    response = post(boston_server, "/v2/models/boston-rf/infer", request)
    assert response.status_code == 200, response.text
    assert_same(outputs_by_name(response.json()), {"predictions": r_predictions["predictions"][:3]})


def test_zero_length_tensors_give_zero_length_outputs(boston_server, boston_config, cars_server):
    request = {"inputs": input_tensors([], boston_config["input"]["columns"]), "id": "none"}
    response = post(boston_server, "/v2/models/boston-rf/infer", request)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"] == [
        {"name": "predictions", "datatype": "FP64", "shape": [0], "data": []}
    ]
    # with no rows the inputs are still checked: all but one missing is a 400 naming them
    request["inputs"] = request["inputs"][:1]
    details = _infer_error(boston_server, request)["details"]
    assert {"row": None, "field": "lstat", "problem": "required column is missing"} in details
    cars = {"inputs": input_tensors([], _cars_columns(cars_server))}
    body = post(cars_server, "/v2/models/cars93-ranger/infer?type=class", cars).json()
    assert body["outputs"] == [{"name": "class", "datatype": "BYTES", "shape": [0], "data": []}]


def test_outputs_empty_means_all_and_a_repeated_output_is_400(
    boston_server, boston_config, r_predictions
):
    request = _boston_request(boston_config, r_predictions)
    for nothing in ([], None):  # null as clients serialise None; OpenAPI says nullable
        request["outputs"] = nothing
        body = post(boston_server, "/v2/models/boston-rf/infer", request).json()
        assert [output["name"] for output in body["outputs"]] == ["predictions"]

    # 20,000 copies of one name were 20,000 copies of the tensor in the answer.
    request["outputs"] = [{"name": "predictions"}] * 3
    assert "requested twice" in _infer_error(boston_server, request)["error"]


@pytest.mark.parametrize("field", ["id", "parameters", "input-parameters", "output-parameters"])
def test_id_and_parameters_of_the_wrong_json_type_are_400(
    boston_server, boston_config, r_predictions, field: str
) -> None:
    request = _boston_request(boston_config, r_predictions)
    if field == "id":
        request["id"] = 42  # it used to be dropped for a made-up id: the echo broke silently
    elif field == "parameters":
        request["parameters"] = "binary"
    elif field == "input-parameters":
        request["inputs"][0]["parameters"] = ["x"]
    else:
        request["outputs"] = [{"name": "predictions", "parameters": 1}]
    message = _infer_error(boston_server, request)["error"]
    assert ("id" if field == "id" else "parameters") in message


def _rename(mapping: dict[str, Any], old: str, new: str) -> None:
    mapping[new] = mapping.pop(old)


# R's `$` completes a prefix: "inputs_v2" was read as "inputs", "namespace" as "name". Keys must
# match exactly, as every JSON client expects.
@pytest.mark.parametrize(
    ("key", "longer"),
    [("inputs", "inputs_v2"), ("name", "namespace"), ("shape", "shapes"), ("outputs", "names")],
)
def test_a_key_that_only_starts_with_a_protocol_key_is_not_that_key(
    boston_server, boston_config, r_predictions, key: str, longer: str
) -> None:
    request = _boston_request(boston_config, r_predictions)
    if key == "outputs":
        request["outputs"] = [{"names": "predictions"}]
    elif key == "inputs":
        _rename(request, "inputs", longer)
    else:
        _rename(request["inputs"][0], key, longer)
    assert "error" in _infer_error(boston_server, request)


def test_a_tensor_without_data_is_told_so_even_with_a_datatype(
    boston_server, boston_config, r_predictions
) -> None:
    request = _boston_request(boston_config, r_predictions)
    del request["inputs"][0]["data"]  # "datatype" starts with "data"
    assert 'has no "data"' in _infer_error(boston_server, request)["error"]


def test_idempotency_key_is_not_echoed_as_the_id(boston_server, boston_config, r_predictions):
    request = {**_boston_request(boston_config, r_predictions), "idempotency_key": "k-1"}
    response = post(boston_server, "/v2/models/boston-rf/infer", request)
    assert response.status_code == 200, response.text
    assert response.json()["id"] != "k-1"


def test_kserve_v1_instances_must_be_spelt_exactly(boston_server, r_predictions) -> None:
    body = {"instances_extra": r_predictions["rows"][:2]}
    response = post(boston_server, "/v1/models/boston-rf:predict", body)
    assert response.status_code == 400, response.text
    assert "instances" in response.json()["error"]


def test_the_binary_extension_with_a_json_type_is_415_saying_what_to_send(
    boston_server, boston_config, r_predictions
) -> None:
    """The extension's JSON header followed by raw tensor bytes, sent as application/json: it
    was a 400 about a NUL byte, which told the client nothing."""
    header = json.dumps(_boston_request(boston_config, r_predictions)).encode()
    response = requests.post(
        boston_server.url("/v2/models/boston-rf/infer"),
        data=header + bytes(range(8)) * 3,
        headers={
            "Content-Type": "application/json",
            "Inference-Header-Content-Length": str(len(header)),
        },
        timeout=30,
    )
    assert response.status_code == 415, response.text
    assert "binary_data=False" in response.json()["error"]


def test_model_ready_answers_name_and_ready(boston_server: NativeServer) -> None:
    for path in ("/v2/models/boston-rf/ready", "/v2/models/boston-rf/versions/1.0.0/ready"):
        response = get(boston_server, path)
        assert response.status_code == 200
        assert response.json() == {"name": "boston-rf", "ready": True}


@pytest.mark.parametrize(
    "path", ["/predict", "/v1/models/cars93-ranger:predict", "/v2/models/cars93-ranger/infer"]
)
def test_a_type_that_is_not_utf8_still_gets_a_utf8_json_answer(cars_server, cars_truth, path):
    rows = cars_truth["rows"][:1]
    body = _body_for(path, rows, _cars_columns(cars_server))
    response = requests.post(cars_server.url(f"{path}?type=%FF%C0"), json=body, timeout=30)
    assert response.status_code == 400
    text = response.content.decode("utf-8")  # raised UnicodeDecodeError: the byte was echoed
    assert "<ff><c0>" in text


@pytest.mark.parametrize("query", ["type=class&type=prob", "type=prob&type=prob"])
def test_a_repeated_type_is_400(cars_server, cars_truth, query: str) -> None:
    response = post(cars_server, f"/predict?{query}", cars_truth["rows"][:1])
    assert response.status_code == 400, response.text
    assert "once" in response.json()["error"]["message"]


def test_type_selects_the_default_outputs_of_infer(cars_server, cars_truth) -> None:
    expected = expected_tensors(cars_truth)
    request = {"inputs": input_tensors(cars_truth["rows"], _cars_columns(cars_server))}
    path = "/v2/models/cars93-ranger/infer"

    classes = post(cars_server, f"{path}?type=class", request).json()
    assert outputs_by_name(classes) == {"class": expected["class"]}
    probabilities = post(cars_server, f"{path}?type=prob", request).json()
    assert_same(outputs_by_name(probabilities), {k: v for k, v in expected.items() if k != "class"})
    # "outputs" names the tensors itself
    request["outputs"] = [{"name": "class"}]
    chosen = post(cars_server, f"{path}?type=prob", request).json()["outputs"]
    assert [output["name"] for output in chosen] == ["class"]
    unknown = post(cars_server, f"{path}?type=raw", request)
    assert unknown.status_code == 400 and "class, prob" in unknown.json()["error"]


def test_type_on_infer_of_a_regression_model_is_400(boston_server, boston_config, r_predictions):
    response = post(
        boston_server,
        "/v2/models/boston-rf/infer?type=prob",
        _boston_request(boston_config, r_predictions),
    )
    assert response.status_code == 400, response.text
    assert "classifiers" in response.json()["error"]


def test_openapi_infer_request_matches_what_the_server_takes(boston_server, cars_server) -> None:
    spec = get(boston_server, "/openapi.json").json()
    infer = spec["paths"]["/v2/models/boston-rf/infer"]["post"]
    request = infer["requestBody"]["content"]["application/json"]["schema"]
    # extra_columns: ignore, so another input is ignored, not refused: no enum of names
    assert "enum" not in request["properties"]["inputs"]["items"]["properties"]["name"]
    outputs = request["properties"]["outputs"]
    assert outputs["items"]["required"] == ["name"] and outputs["uniqueItems"] is True
    assert request["properties"]["parameters"] == {"type": "object", "nullable": True}
    too_large = infer["responses"]["413"]["content"]["application/json"]["schema"]
    assert {"$ref": "#/components/schemas/Error"} in too_large["oneOf"]
    cars = get(cars_server, "/openapi.json").json()
    (parameter,) = cars["paths"]["/v2/models/cars93-ranger/infer"]["post"]["parameters"]
    assert parameter["name"] == "type"


def test_the_server_serves_after_the_hostile_requests(boston_server, boston_config, r_predictions):
    request = {"inputs": input_tensors(r_predictions["rows"], boston_config["input"]["columns"])}
    response = post(boston_server, "/v2/models/boston-rf/infer", request)
    assert response.status_code == 200
    assert_same(outputs_by_name(response.json()), {"predictions": r_predictions["predictions"]})


def _body_for(path: str, rows: list[dict[str, Any]], columns: list[dict[str, Any]]) -> Any:
    if path.startswith("/v1/"):
        return {"instances": rows}
    if path.startswith("/v2/"):
        return {"inputs": input_tensors(rows, columns)}
    return rows
