"""`helm test` for real: the chart's own test pod runs on the real node and calls the release
by its cluster DNS name (`<release>.<namespace>.svc`, answered by CoreDNS) on the Service IP
(translated by kube-proxy to the pod on the same bridge), /readyz and then /predict with the
example's request, exactly as it would on AKS. With the Service left without pods the same test
fails."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cluster.kube import eventually, helm, kubectl, kubectl_json, ready_pods, run

from cluster_node.boston import NODE_OVERRIDES, install, predict_body

RELEASE = "boston"
SELECTOR = f"app.kubernetes.io/instance={RELEASE}"
REAL_NODE = "rmp-node-0"


def helm_test_values() -> dict:
    """The test pod placed like the model's pod (the node's selector and toleration), and a
    /predict call through the Service with the example's own request."""
    return {
        "tests": {
            "nodeSelector": NODE_OVERRIDES["nodeSelector"],
            "tolerations": NODE_OVERRIDES["tolerations"],
            "predictBody": json.dumps(predict_body()),
        }
    }


@pytest.fixture(scope="module")
def release(module_namespace: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield install(RELEASE, module_namespace, tmp_path_factory.mktemp("boston-rf-helm-test"),
                  helm_test_values())  # fmt: skip
    helm("uninstall", RELEASE, "-n", module_namespace, "--wait", "--timeout", "120s", check=False)


def helm_test(namespace: str) -> tuple[int, str]:
    """helm test's exit status and output, with the test pod's log when it failed (a pod that
    succeeded is deleted by its hook-delete-policy)."""
    done = run("helm", "test", RELEASE, "-n", namespace, "--timeout", "180s",
               check=False, timeout=240)  # fmt: skip
    output = done.stdout + done.stderr
    if done.returncode != 0:
        pod = hook_pod_name(namespace)
        output += kubectl("logs", pod, "-n", namespace, check=False).stdout
    return done.returncode, output


def hook_pod_name(namespace: str) -> str:
    """The name of the chart's test hook, from the release's own hooks."""
    hooks = yaml.safe_load_all(helm("get", "hooks", RELEASE, "-n", namespace).stdout)
    return next(hook["metadata"]["name"] for hook in hooks if hook and hook["kind"] == "Pod")


def scheduled_on(namespace: str, pod: str) -> str:
    """The node the scheduler assigned `pod` to, from its Scheduled event (the pod itself is
    deleted once it succeeded: hook-delete-policy hook-succeeded)."""
    selector = f"involvedObject.name={pod},reason=Scheduled"
    events = kubectl_json("get", "events", "-n", namespace, "--field-selector", selector)
    messages = [event["message"] for event in events["items"]]
    assert messages, f"no Scheduled event for {pod}"
    return messages[-1].rsplit(" to ", 1)[-1]


def test_helm_test_pod_succeeds_on_the_real_node(module_namespace: str, release: Path) -> None:
    status, output = helm_test(module_namespace)
    assert status == 0, output
    assert "Phase:          Succeeded" in output or "Phase: Succeeded" in output, output
    assert scheduled_on(module_namespace, hook_pod_name(module_namespace)) == REAL_NODE


def test_helm_test_fails_when_the_service_has_no_pod(module_namespace: str, release: Path) -> None:
    """The control: same release, scaled to 0, so the Service has no endpoint (kube-proxy
    rejects the connection) and the test pod's curl gives up."""
    deployment = kubectl_json("get", "deployment", "-n", module_namespace, "-l", SELECTOR)
    name = deployment["items"][0]["metadata"]["name"]
    kubectl("scale", "deployment", name, "-n", module_namespace, "--replicas=0")
    assert eventually(lambda: not kubectl_json(
        "get", "pods", "-n", module_namespace, "-l", SELECTOR)["items"], timeout=120)  # fmt: skip
    status, output = helm_test(module_namespace)
    assert status != 0, output
    pod = kubectl_json("get", "pod", hook_pod_name(module_namespace), "-n", module_namespace)
    assert pod["spec"]["nodeName"] == REAL_NODE
    assert pod["status"]["phase"] == "Failed"
    logs = kubectl("logs", pod["metadata"]["name"], "-n", module_namespace, check=False)
    assert "readyz ok" not in logs.stdout
    kubectl("scale", "deployment", name, "-n", module_namespace, "--replicas=1")
    assert eventually(lambda: len(ready_pods(module_namespace, SELECTOR)) == 1, timeout=180)
