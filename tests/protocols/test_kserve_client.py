"""The KServe Python SDK's REST client (a real third-party client from PyPI) against rmodelpack,
natively and in the image: the Open Inference Protocol (v2) and KServe v1 give R's predictions.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import numpy as np
import pytest

from protocols.conftest import Served
from protocols.oip import assert_same, expected_tensors

kserve = pytest.importorskip("kserve")
from kserve.protocol.infer_type import RequestedOutput  # noqa: E402

NUMPY_TYPES = {"FP64": np.float64, "INT64": np.int64, "BOOL": np.bool_, "BYTES": np.object_}


def client(protocol: str) -> Any:
    return kserve.InferenceRESTClient(kserve.RESTConfig(protocol=protocol, timeout=60))


def metadata(served: Served) -> dict[str, Any]:
    return httpx.get(f"{served.url}/v2/models/{served.example}", timeout=10).json()


def infer_request(served: Served, outputs: list[str] | None = None) -> Any:
    """One InferInput per input the model's metadata lists, filled from numpy arrays."""
    rows = served.truth["rows"]
    inputs = []
    for tensor in metadata(served)["inputs"]:
        values = np.array(
            [row[tensor["name"]] for row in rows], dtype=NUMPY_TYPES[tensor["datatype"]]
        )
        infer_input = kserve.InferInput(tensor["name"], [len(rows)], tensor["datatype"])
        infer_input.set_data_from_numpy(values, binary_data=False)
        inputs.append(infer_input)
    requested = [RequestedOutput(name) for name in outputs or []]
    return kserve.InferRequest(
        model_name=served.example, infer_inputs=inputs, request_outputs=requested or None
    )


async def _v2_infer(served: Served, outputs: list[str] | None) -> Any:
    async with client("v2") as rest:
        assert await rest.is_server_live(served.url)
        assert await rest.is_server_ready(served.url)
        assert await rest.is_model_ready(served.url, served.example)
        return await rest.infer(served.url, infer_request(served, outputs), served.example)


def test_v2_infer_through_the_kserve_client_equals_r(served: Served) -> None:
    response = asyncio.run(_v2_infer(served, None))

    assert response.model_name == served.example
    got = {output.name: output.as_numpy().tolist() for output in response.outputs}
    expected = expected_tensors(served.truth)
    assert_same(got, expected)


def test_v2_requested_outputs_through_the_kserve_client(served: Served) -> None:
    wanted = list(expected_tensors(served.truth))[-1:]
    response = asyncio.run(_v2_infer(served, wanted))
    assert [output.name for output in response.outputs] == wanted


async def _v1_predict(served: Served) -> Any:
    async with client("v1") as rest:
        assert await rest.is_server_live(served.url)  # v1: GET / answers {"status": "alive"}
        assert await rest.is_model_ready(served.url, served.example)
        return await rest.infer(served.url, {"instances": served.truth["rows"]}, served.example)


def test_v1_predict_through_the_kserve_client_equals_r(served: Served) -> None:
    body = asyncio.run(_v1_predict(served))
    expected = expected_tensors(served.truth)
    if served.example == "boston-rf":
        assert_same(body, {"predictions": expected["predictions"]})
    else:
        classes = served.truth["classes"]
        assert_same(
            body["predictions"],
            [
                {"class": cls, "probabilities": {c: expected[f"prob_{c}"][i] for c in classes}}
                for i, cls in enumerate(expected["class"])
            ],
        )


async def _v2_unknown_model(served: Served) -> httpx.HTTPStatusError:
    request = infer_request(served)
    async with client("v2") as rest:
        with pytest.raises(httpx.HTTPStatusError) as failure:
            await rest.infer(served.url, request, "no-such-model")
        return failure.value


def test_unknown_model_is_a_404_the_client_reports(served: Served) -> None:
    error = asyncio.run(_v2_unknown_model(served))
    assert error.response.status_code == 404
    assert "no model named 'no-such-model'" in str(error)


async def _v2_binary_infer(served: Served) -> httpx.HTTPStatusError:
    request = infer_request(served)
    for infer_input in request.inputs:  # the SDK's default: the binary data extension
        infer_input.set_data_from_numpy(infer_input.as_numpy(), binary_data=True)
    async with client("v2") as rest:
        with pytest.raises(httpx.HTTPStatusError) as failure:
            await rest.infer(served.url, request, served.example)
        return failure.value


def test_binary_tensors_are_a_415_that_says_what_to_send(served: Served) -> None:
    error = asyncio.run(_v2_binary_infer(served))
    assert error.response.status_code == 415
    assert "binary_data=False" in str(error)
