"""NetworkPolicy, ServiceAccount, ServiceMonitor, the helm test hook and NOTES."""

from __future__ import annotations

import jmespath
import pytest

from chart.helm_template import CHART_DIR, by_kind, one, render_chart, run_helm

pytestmark = pytest.mark.helm


def test_network_policy_admits_only_traefik_the_scraper_and_labelled_clients(scenario_docs):
    docs = scenario_docs("default")
    policy = one(docs, "NetworkPolicy")
    assert policy["spec"]["podSelector"] == one(docs, "Deployment")["spec"]["selector"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    [rule] = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    namespaces = jmespath.search("from[].namespaceSelector.matchLabels", rule)
    assert namespaces == [
        {"kubernetes.io/metadata.name": "traefik"},
        {"kubernetes.io/metadata.name": "kube-system"},
    ]
    client = jmespath.search("from[?podSelector && !namespaceSelector] | [0]", rule)
    test_pod = one(docs, "Pod")
    assert client["podSelector"]["matchLabels"].items() <= test_pod["metadata"]["labels"].items()


def test_network_policy_can_narrow_to_traefik_pods(scenario_docs):
    rules = one(scenario_docs("everything"), "NetworkPolicy")["spec"]["ingress"]
    assert rules[0]["from"][0]["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/name": "traefik"}
    }
    assert rules[1]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "batch-scoring"
    }


def test_service_account_takes_workload_identity_and_mounts_no_token(scenario_docs):
    docs = scenario_docs("everything")
    account = one(docs, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    assert account["metadata"]["annotations"]["azure.workload.identity/client-id"]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]


@pytest.mark.parametrize(
    ("scenario", "api_version"),
    [("everything", "azmonitoring.coreos.com/v1"), ("keda", "monitoring.coreos.com/v1")],
)
def test_service_monitor_api_version_is_configurable(scenario_docs, scenario, api_version):
    docs = scenario_docs(scenario)
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == api_version
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["selector"]["matchLabels"] == one(docs, "Service")["spec"]["selector"]


def test_test_hook_is_not_selected_by_the_service(scenario_docs):
    docs = scenario_docs("default")
    pod = one(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    selector = one(docs, "Service")["spec"]["selector"]
    assert not selector.items() <= pod["metadata"]["labels"].items()


def test_test_hook_calls_readyz_and_predict_through_the_service(scenario_docs):
    """The image's helm-test.sh does the calls (tests/chart/test_helm_test_script.py runs it);
    the hook gives it the Service, the sample body and the ingress route."""
    pod = one(scenario_docs("everything"), "Pod")
    container = pod["spec"]["containers"][0]
    assert container["command"][-1] == "/opt/rmodelpack/runtime/helm-test.sh"
    env = {e["name"]: e for e in container["env"]}
    assert env["SERVICE_URL"]["value"] == "http://release-boston.models.svc:80"
    assert env["PREDICT_BODY"]["value"] == '[{"crim": 0.1, "rm": 6.5, "lstat": 4.9}]'
    # Through Traefik with TLS and auth: the credentials come from a Secret.
    assert env["AUTH_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "boston-test-credentials",
        "key": "password",
    }
    assert env["PUBLIC_URL"]["value"] == "https://boston.example.com"
    assert env["INGRESS_SERVICE"]["value"] == "traefik.traefik.svc.cluster.local"


def test_test_hook_can_be_switched_off(helm):
    assert by_kind(render_chart({"tests": {"enabled": False}}, helm=helm), "Pod") == []


def test_notes_tell_how_to_call_the_service(helm):
    notes = run_helm(
        ["install", "release", str(CHART_DIR), "--dry-run=client", "--namespace", "models",
         "--set-json", '{"auth":{"enabled":true,"existingSecret":"h"}}'],
        helm=helm,
    )  # fmt: skip
    assert "curl -u USER:PASSWORD https://model.example.com/readyz" in notes
    assert "helm test release -n models" in notes
    assert "release-rmodelpack-client=true" in notes
