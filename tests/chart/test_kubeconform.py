"""Every scenario's render passes kubeconform -strict against Kubernetes 1.32 and 1.35 and the
Traefik, cert-manager, KEDA and ServiceMonitor CRD schemas, with zero resources skipped."""

from __future__ import annotations

import json

import pytest

from chart.chart_checks import assert_all_valid
from chart.helm_template import KUBE_VERSIONS, SCENARIOS, render_text, scenario_files
from chart.k8s_schemas import run_kubeconform

pytestmark = pytest.mark.helm


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_render_is_valid_with_nothing_skipped(
    kubeconform, k8s_schema_root, helm, scenario, kube_version
):
    files = {} if scenario == "default" else {"values_files": [scenario_files()[scenario]]}
    manifests = render_text(helm=helm, kube_version=kube_version, **files)
    report = run_kubeconform(kubeconform, k8s_schema_root, kube_version, manifests)
    assert_all_valid(report, manifests)


def test_strict_validation_rejects_an_unknown_field(kubeconform, k8s_schema_root, helm):
    """Control: the schemas really are strict, so the passes above mean something."""
    manifests = render_text(helm=helm, show_only=["templates/deployment.yaml"])
    tampered = manifests.replace("  revisionHistoryLimit:", "  revisionHistoryLimt:")
    report = run_kubeconform(kubeconform, k8s_schema_root, "1.32.0", tampered)
    assert report["summary"]["invalid"] == 1
    assert "revisionHistoryLimt" in json.dumps(report["resources"])
