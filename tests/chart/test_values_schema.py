"""values.schema.json rejects bad values readably; rmodelpack.validateValues catches the
cross-field mistakes; the keys `rmodelpack render` emits (docs/design.md) are all accepted."""

from __future__ import annotations

import pytest

from chart.helm_template import HelmFailedError, one, render_chart

pytestmark = pytest.mark.helm

# Every key docs/design.md "Chart values that render emits" lists, with example values.
RENDER_EMITTED_VALUES = {
    "image": {"repository": "127.0.0.1:5000/models/boston-rf", "tag": "1.0.0-0123456789ab"},
    "model": {
        "name": "boston-rf",
        "version": "1.0.0",
        "sha256": "ab" * 32,
        "source": "url",
        "url": {"existingSecret": "boston-model-url", "key": "url"},
        "pvc": {"claimName": "models", "subPath": "boston/model.rds"},
    },
    "runtime": {
        "workers": 2,
        "threads": 1,
        "timeoutSeconds": 30,
        "drainSeconds": 5,
        "maxBodyBytes": 1048576,
        "batching": {"enabled": True, "maxRows": 256},
    },
    "ingress": {"host": "boston.example.com", "flavor": "nginx", "className": "nginx"},
    "tls": {"enabled": True, "issuerRef": {"kind": "ClusterIssuer", "name": "letsencrypt-prod"}},
    "auth": {
        "enabled": True,
        "realm": "boston-rf",
        "users": ["alice:$2b$12$" + "a" * 53],
        "existingSecret": None,
    },
    "autoscaling": {
        "enabled": True,
        "minReplicas": 2,
        "maxReplicas": 10,
        "targetCPUUtilizationPercentage": 70,
        "targetMemoryUtilizationPercentage": None,
    },
    "resources": {"requests": {"cpu": "1", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
    "tests": {"predictBody": '[{"crim": 0.1}]'},
}


def helm_error(helm: str, values: dict) -> str:
    with pytest.raises(HelmFailedError) as failure:
        render_chart(values, helm=helm)
    return failure.value.stderr


def test_unknown_top_level_key_is_rejected(helm):
    stderr = helm_error(helm, {"replicas": 3})
    assert "additional properties 'replicas' not allowed" in stderr


def test_unknown_nested_key_is_rejected(helm):
    stderr = helm_error(helm, {"runtime": {"timeout": 30}})
    assert "at '/runtime': additional properties 'timeout' not allowed" in stderr


def test_wrong_type_names_the_field_and_both_types(helm):
    stderr = helm_error(helm, {"runtime": {"threads": "two"}})
    assert "at '/runtime/threads': got string, want integer" in stderr


def test_enum_violation_lists_the_choices(helm):
    stderr = helm_error(helm, {"model": {"source": "s3"}})
    assert "/model/source" in stderr and "'image', 'url', 'pvc'" in stderr


def test_cross_field_errors_are_reported_together(helm):
    values = {"model": {"source": "url"}, "ingress": {"host": ""}, "keda": {"enabled": True}}
    stderr = helm_error(helm, values)
    for message in (
        "autoscaling.enabled and keda.enabled are mutually exclusive",
        "model.source=url needs model.url.existingSecret",
        "model.source=url needs model.sha256",
        "ingress.enabled needs ingress.host",
    ):
        assert message in stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"model": {"source": "pvc"}}, "model.source=pvc needs model.pvc.claimName"),
        ({"auth": {"enabled": True}}, "auth.enabled needs auth.users"),
        (
            {"tls": {"issuer": {"create": True}}},
            "tls.issuer.type=acme-* needs tls.issuer.acme.email",
        ),
        (
            {"tls": {"certificate": {"create": False}}},
            "tls.certificate.create=false needs tls.secretName",
        ),
        ({"ipAllowList": {"enabled": True}}, "ipAllowList.enabled needs at least one CIDR"),
        (
            {"pdb": {"minAvailable": 1}},
            "pdb.minAvailable and pdb.maxUnavailable are mutually exclusive",
        ),
    ],
)
def test_incomplete_features_are_refused(helm, values, message):
    assert message in helm_error(helm, values)


def test_values_render_emits_are_accepted(helm):
    docs = render_chart(RENDER_EMITTED_VALUES, helm=helm)
    deployment = one(docs, "Deployment")
    assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == "1.0.0"
    assert one(docs, "Certificate")["spec"]["issuerRef"]["name"] == "letsencrypt-prod"
    assert one(docs, "Pod")["spec"]["containers"][0]["env"][1]["value"] == '[{"crim": 0.1}]'
