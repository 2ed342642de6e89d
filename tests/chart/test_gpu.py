"""GPU node pools: extended resources, a nodeSelector and the pool's taint toleration reach the
model server's pod (and only it); threads per worker reach the runtime as RMP_THREADS."""

from __future__ import annotations

import jmespath
import pytest

from chart.helm_template import HelmFailedError, one, render_chart

pytestmark = pytest.mark.helm

DEPLOYMENT = ["templates/deployment.yaml"]


def model_server(deployment: dict) -> dict:
    return jmespath.search("spec.template.spec.containers[?name=='model-server'] | [0]", deployment)


def test_gpu_scenario_requests_a_gpu_on_the_tainted_aks_gpu_pool(scenario_docs):
    deployment = one(scenario_docs("gpu"), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert model_server(deployment)["resources"] == {
        "requests": {"cpu": "4", "memory": "8Gi"},
        "limits": {"memory": "16Gi", "nvidia.com/gpu": 1},
    }
    assert pod["nodeSelector"] == {"kubernetes.azure.com/accelerator": "nvidia"}
    assert pod["tolerations"] == [
        {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
    ]


def test_gpu_scenario_passes_workers_and_threads_to_the_runtime(scenario_docs):
    container = model_server(one(scenario_docs("gpu"), "Deployment"))
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["RMP_WORKERS"] == "1"
    assert env["RMP_THREADS"] == "4"


def test_only_the_model_server_claims_the_gpu(scenario_docs):
    docs = scenario_docs("gpu")
    test_pod = one(docs, "Pod")
    for container in test_pod["spec"]["containers"]:
        assert "nvidia.com/gpu" not in str(container.get("resources", {}))
    assert "nodeSelector" not in test_pod["spec"] and "tolerations" not in test_pod["spec"]


def test_gpu_scenario_autoscales_from_one_replica(scenario_docs):
    hpa = one(scenario_docs("gpu"), "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)


def test_schema_accepts_extended_resources_in_requests_and_limits(helm):
    resources = {
        "requests": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": 1},
        "limits": {"memory": "8Gi", "nvidia.com/gpu": "1", "example.com/fpga": 2},
    }
    deployment = render_chart({"resources": resources}, show_only=DEPLOYMENT, helm=helm)[0]
    assert model_server(deployment)["resources"] == resources


def test_schema_refuses_a_non_scalar_quantity(helm):
    with pytest.raises(HelmFailedError) as failure:
        render_chart({"resources": {"limits": {"nvidia.com/gpu": {"count": 1}}}}, helm=helm)
    assert "/resources/limits/nvidia.com~1gpu" in failure.value.stderr
