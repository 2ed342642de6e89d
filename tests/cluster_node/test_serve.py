"""The boston-rf example really serves from the real node: the chart installed with the rendered
values (Pod Security "restricted"), the image loaded into the node's containerd (never pulled),
the pod Ready through its real probes, /predict answering through `kubectl port-forward` on
127.0.0.1 with exactly what R's own predict() returns."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cluster.kube import helm, kubectl_json, ready_pods

from cluster_node.boston import install, native_prediction, port_forward, predict_body

RELEASE = "boston"


@pytest.fixture(scope="module")
def rendered(module_namespace: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield install(RELEASE, module_namespace, tmp_path_factory.mktemp("boston-rf"))
    helm("uninstall", RELEASE, "-n", module_namespace, "--wait", "--timeout", "120s", check=False)


@pytest.fixture
def forwarded_port(module_namespace: str, rendered: Path) -> Iterator[int]:
    """The chart's Service, port-forwarded to 127.0.0.1."""
    service = kubectl_json(
        "get", "service", "-n", module_namespace, "-l", f"app.kubernetes.io/instance={RELEASE}"
    )["items"][0]
    target = f"service/{service['metadata']['name']}"
    with port_forward(module_namespace, target, service["spec"]["ports"][0]["port"]) as port:
        yield port


def test_pod_is_ready_on_the_real_node(module_namespace: str, rendered: Path) -> None:
    names = ready_pods(module_namespace, f"app.kubernetes.io/instance={RELEASE}")
    assert len(names) == 1
    live = kubectl_json("get", "pod", names[0], "-n", module_namespace)
    assert live["spec"]["nodeName"] == "rmp-node-0"
    status = live["status"]["containerStatuses"][0]
    assert status["ready"] and status["containerID"].startswith("containerd://")
    assert status["restartCount"] == 0


def post_predict(port: int, body: dict) -> requests.Response:
    # The first connection through a fresh port-forward can race the stream setup; retry briefly.
    deadline = time.monotonic() + 30
    while True:
        try:
            return requests.post(f"http://127.0.0.1:{port}/predict", json=body, timeout=30)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_predict_through_port_forward_equals_native_r(
    forwarded_port: int, rendered: Path, tmp_path: Path
) -> None:
    body = predict_body()
    response = post_predict(forwarded_port, body)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    expected = native_prediction(rendered, body["data"], tmp_path)
    assert len(predictions) == len(expected) == 5
    assert predictions == pytest.approx(expected, rel=0, abs=1e-9)
