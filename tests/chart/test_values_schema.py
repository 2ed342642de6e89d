"""values.schema.json rejects bad values readably; rmodelpack.validateValues catches the
cross-field mistakes; the keys `rmodelpack render` emits (docs/design.md) are all accepted."""

from __future__ import annotations

import pytest
from conftest import nested

from chart.helm_template import HelmFailedError, one, parse_docs, render_chart, render_text

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


# --- values the schema must refuse, so a template never renders them -----------------------------


@pytest.mark.parametrize(
    "dotted",
    [
        "runtime.threads",
        "runtime.timeoutSeconds",
        "runtime.drainSeconds",
        "runtime.maxBodyBytes",
        "runtime.port",
        "runtime.batching",
        "runtime.batching.enabled",
        "runtime.batching.maxRows",
        "runtime",
        "ingress",
        "replicaCount",
    ],
)
def test_a_null_setting_is_missing_not_rendered_empty(helm, dotted):
    """Helm deletes a key set to null; without `required` the templates rendered "<nil>", "0" or
    an empty containerPort (or failed on a nil pointer)."""
    parent, _, leaf = dotted.rpartition(".")
    stderr = helm_error(helm, nested(dotted, None))
    pointer = "".join(f"/{key}" for key in parent.split(".") if key)
    assert f"at '{pointer}': missing property '{leaf}'" in stderr


def test_workers_null_still_accepted(helm):
    env = deployment_env(render_chart({"runtime": {"workers": None}}, helm=helm))
    assert env["RMP_WORKERS"]["valueFrom"]["resourceFieldRef"]["resource"] == "requests.cpu"


def deployment_env(docs: list[dict]) -> dict[str, dict]:
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e for e in container["env"]}


NEWLINE_ENV = "model.rds\n- name: LD_PRELOAD\n  value: /tmp/evil.so"


@pytest.mark.parametrize(
    ("dotted", "value"),
    [
        ("model.pvc.subPath", NEWLINE_ENV),
        ("model.pvc.subPath", "../etc/passwd"),
        ("model.pvc.subPath", "boston/../../etc/passwd"),
        ("model.pvc.subPath", "boston/./model.rds"),
        ("model.pvc.subPath", "boston model.rds"),
        ("model.url.key", "url\n          optional: true"),
        ("model.url.key", "url/x"),
        ("ingress.className", "nginx\n  defaultBackend: {}"),
        ("ingress.className", "Nginx"),
        ("ingress.path", "/x`) || PathPrefix(`/"),
        ("ingress.path", "/x\n      - path: /"),
        ("ingress.path", '/x"'),
        ("ingress.path", "/a b"),
        ("ingress.entrypoints.https", "websecure\n    traefik.ingress.kubernetes.io/x: y"),
        ("priorityClassName", "high\n      hostNetwork: true"),
        ("imagePullSecrets", ["pull\n      hostPID: true"]),
    ],
)
def test_strings_that_would_break_out_of_their_yaml_are_refused(helm, dotted, value):
    stderr = helm_error(helm, nested(dotted, value))
    assert f"at '/{dotted.replace('.', '/')}" in stderr


@pytest.mark.parametrize(
    ("dotted", "value"),
    [
        ("model.pvc.subPath", "boston/model.rds"),
        ("model.pvc.subPath", "/boston/v1.0/model.rds"),
        ("model.pvc.subPath", "..hidden/...rds"),
        ("model.url.key", "MODEL.url_1-x"),
        ("ingress.className", "nginx-internal.example.com"),
        ("ingress.path", "/models/boston-rf_1.0"),
    ],
)
def test_ordinary_strings_are_accepted(helm, dotted, value):
    render_chart(nested(dotted, value), helm=helm)


def test_strings_are_quoted_even_past_the_schema(helm):
    """Defence in depth: with --skip-schema-validation the values stay single YAML strings."""
    values = {
        "model": {
            "source": "url",
            "sha256": "ab" * 32,
            "url": {"existingSecret": "blob-url", "key": "url\n          optional: true"},
        },
        "ingress": {
            "className": "nginx\n  defaultBackend: {}",
            "path": "/x\n      - path: /",
        },
        "priorityClassName": "high\n      hostNetwork: true",
        "imagePullSecrets": ["pull\n      hostPID: true"],
    }
    docs = parse_docs(render_text(values, helm=helm, extra_args=["--skip-schema-validation"]))
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert "hostNetwork" not in spec and "hostPID" not in spec
    assert spec["priorityClassName"] == "high\n      hostNetwork: true"
    secret_ref = spec["initContainers"][0]["env"][0]["valueFrom"]["secretKeyRef"]
    assert secret_ref == {"name": "blob-url", "key": "url\n          optional: true"}
    ingress = one(docs, "Ingress", "release-rmodelpack")["spec"]
    assert ingress["ingressClassName"] == "nginx\n  defaultBackend: {}"
    assert "defaultBackend" not in ingress
    assert [p["path"] for p in ingress["rules"][0]["http"]["paths"]] == ["/x\n      - path: /"]

    pvc = {"model": {"source": "pvc", "pvc": {"claimName": "models", "subPath": NEWLINE_ENV}}}
    text = render_text(pvc, helm=helm, extra_args=["--skip-schema-validation"])
    env = deployment_env(parse_docs(text))
    assert "LD_PRELOAD" not in env
    assert env["RMP_MODEL_PATH"]["value"] == f"/var/lib/rmodelpack/model/{NEWLINE_ENV}"


# --- the server.* → runtime.* rename --------------------------------------------------------------


def test_old_server_values_name_the_new_key(helm):
    stderr = helm_error(helm, {"server": {"workers": 2, "timeoutSeconds": 30}})
    for key in ("workers", "timeoutSeconds"):
        assert f"server.* was renamed runtime.*: move server.{key} to runtime.{key}" in stderr
    assert "additional properties" not in stderr


def test_an_empty_server_block_is_named_too(helm):
    assert "server.* was renamed runtime.*" in helm_error(helm, {"server": {}})


# --- runtime.workers null: one worker per requested core, still at most 64 ------------------------


@pytest.mark.parametrize(
    ("resources", "workers"),
    [
        ({"requests": {"cpu": 100}}, 100),
        ({"requests": {"cpu": "64.5"}}, 65),
        ({"requests": {"cpu": "64001m"}}, 65),
        # Kubernetes takes the request from the limit.
        ({"requests": {"cpu": None}, "limits": {"cpu": "65"}}, 65),
    ],
)
def test_auto_workers_above_64_are_refused(helm, resources, workers):
    stderr = helm_error(helm, {"resources": resources, "runtime": {"workers": None}})
    assert f"gives {workers} workers, above 64: set runtime.workers (1..64)" in stderr


@pytest.mark.parametrize(
    "values",
    [
        {"resources": {"requests": {"cpu": 64}}, "runtime": {"workers": None}},
        {"resources": {"requests": {"cpu": "64000m"}}, "runtime": {"workers": None}},
        {"resources": {"requests": {"cpu": 100}}, "runtime": {"workers": 8}},
    ],
)
def test_auto_workers_up_to_64_or_explicit_workers_are_accepted(helm, values):
    render_chart(values, helm=helm)


# --- image and version strings ------------------------------------------------------------------


@pytest.mark.parametrize("dotted", ["image.tag", "model.version"])
def test_a_number_is_refused_where_a_string_is_templated(helm, dotted):
    """`--set image.tag=2` reached _names.tpl as a float64 and crashed `trunc`."""
    stderr = helm_error(helm, nested(dotted, 2))
    assert f"at '/{dotted.replace('.', '/')}': got number, want string" in stderr


@pytest.mark.parametrize(
    ("repository", "accepted"),
    [
        ("registry.io/team--x/model", True),
        ("registry.io/my__model", True),
        ("registry.io:5000/a.b_c/d-e", True),
        ("registry.io/my___model", False),
        ("registry.io/a-_b", False),
        ("registry.io/model-", False),
    ],
)
def test_image_repository_follows_dockers_separators(helm, repository, accepted):
    values = {"image": {"repository": repository}}
    if accepted:
        render_chart(values, helm=helm)
    else:
        assert "at '/image/repository'" in helm_error(helm, values)
