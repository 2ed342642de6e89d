"""The Open Inference Protocol (v2), KServe v1 and ?type= on the native server, through nginx.

Ground truth is R's own predict() on the host; validation is the one /predict uses, so a bad
tensor is a 400 whose message names the column, never a 500.
"""

from __future__ import annotations

import copy
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
    assert server["name"] == "rmodelpack" and server["extensions"] == []


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
