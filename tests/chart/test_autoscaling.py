"""HPA (autoscaling/v2) and the KEDA alternative, and the PodDisruptionBudget."""

from __future__ import annotations

import pytest

from chart.helm_template import HelmFailedError, by_kind, one, render_chart

pytestmark = pytest.mark.helm


def test_default_hpa_scales_the_deployment_on_cpu_with_behavior(scenario_docs):
    docs = scenario_docs("default")
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": one(docs, "Deployment")["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300


def test_memory_target_adds_a_second_metric(scenario_docs):
    metrics = one(scenario_docs("everything"), "HorizontalPodAutoscaler")["spec"]["metrics"]
    targets = {
        m["resource"]["name"]: m["resource"]["target"]["averageUtilization"] for m in metrics
    }
    assert targets == {"cpu": 60, "memory": 80}


def test_keda_replaces_the_hpa(scenario_docs):
    docs = scenario_docs("keda")
    assert by_kind(docs, "HorizontalPodAutoscaler") == []
    scaled = one(docs, "ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"]["name"] == one(docs, "Deployment")["metadata"]["name"]
    assert [t["type"] for t in scaled["spec"]["triggers"]] == ["cpu", "prometheus"]
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (2, 30)
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior == {"scaleDown": {"stabilizationWindowSeconds": 300}}


def test_keda_default_trigger_is_the_cpu_target(helm):
    values = {"autoscaling": {"enabled": False, "targetCPUUtilizationPercentage": 55}}
    values["keda"] = {"enabled": True}
    scaled = render_chart(values, show_only=["templates/scaledobject.yaml"], helm=helm)[0]
    assert scaled["spec"]["triggers"] == [
        {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "55"}}
    ]


def test_hpa_and_keda_together_are_refused(helm):
    with pytest.raises(HelmFailedError, match="mutually exclusive: KEDA creates its own HPA"):
        render_chart({"keda": {"enabled": True}}, helm=helm)


def test_pdb_selects_the_pods_and_allows_one_down_by_default(scenario_docs):
    docs = scenario_docs("default")
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in pdb["spec"]
    assert pdb["spec"]["selector"] == one(docs, "Deployment")["spec"]["selector"]
    everything = one(scenario_docs("everything"), "PodDisruptionBudget")["spec"]
    assert everything["minAvailable"] == 2 and "maxUnavailable" not in everything
