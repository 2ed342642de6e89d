"""KServe v1's server routes on the native server, through nginx: `GET /` (liveness) and
`GET /v1/models` (the model list), as KServe's own model server answers them. `/` is an exact
route: every other unknown path still gets the JSON 404, another method on `/` the JSON 405.
nginx answers `/` itself, as it does /healthz: the process is live while no worker answers.
"""

from __future__ import annotations

import os
import signal

import pytest
import requests

from runtime.conftest import ServerFactory
from runtime.server import NativeServer

pytestmark = [pytest.mark.r]


def test_root_answers_kserve_liveness(boston_server: NativeServer) -> None:
    response = requests.get(boston_server.url("/"), timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"status": "alive"}
    head = requests.head(boston_server.url("/"), timeout=10)
    assert (head.status_code, head.content) == (200, b"")


def test_v1_models_lists_the_one_model(boston_server: NativeServer) -> None:
    response = requests.get(boston_server.url("/v1/models"), timeout=10)
    assert response.status_code == 200
    assert response.json() == {"models": ["boston-rf"]}


@pytest.mark.parametrize(
    "path", ["/nope", "/v1", "/v1/models/", "/v1/modelsx", "/index.html", "/x/"]
)
def test_unknown_paths_beside_root_are_still_the_json_404(
    boston_server: NativeServer, path: str
) -> None:
    response = requests.get(boston_server.url(path), timeout=10)
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/"), ("DELETE", "/"), ("PUT", "/v1/models")]
)
def test_another_method_on_the_server_routes_is_the_json_405(
    boston_server: NativeServer, method: str, path: str
) -> None:
    response = requests.request(method, boston_server.url(path), timeout=10)
    assert response.status_code == 405, response.text
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert response.headers["Allow"] == "GET, HEAD"


def test_openapi_declares_the_server_routes_with_their_answers(
    boston_server: NativeServer,
) -> None:
    paths = requests.get(boston_server.url("/openapi.json"), timeout=10).json()["paths"]
    root = paths["/"]["get"]
    assert root["tags"] == ["kserve-v1"]
    assert set(root["responses"]) == {"200"}
    schema = root["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["properties"]["status"]["enum"] == ["alive"]
    models = paths["/v1/models"]["get"]
    assert set(models["responses"]) == {"200"}
    schema = models["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["properties"]["models"]["items"]["enum"] == ["boston-rf"]


def test_metrics_label_the_model_list_by_path(boston_server: NativeServer) -> None:
    requests.get(boston_server.url("/v1/models"), timeout=10)
    text = ""
    for _ in range(50):  # workers flush their counters within 0.2 s
        text = requests.get(boston_server.url("/metrics"), timeout=10).text
        if 'route="/v1/models",method="GET",status="200"' in text:
            break
    assert 'route="/v1/models",method="GET",status="200"' in text


def test_root_is_live_while_no_worker_answers(server_factory: ServerFactory) -> None:
    server = server_factory(env={"RMP_WORKERS": "2"})
    pids = list(server.worker_pids().values())
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        root = requests.get(server.url("/"), timeout=5)
        assert (root.status_code, root.json()) == (200, {"status": "alive"})
        with pytest.raises(requests.Timeout):
            requests.get(server.url("/v1/models"), timeout=1)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
