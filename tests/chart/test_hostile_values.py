"""Values a hostile or careless user can write, found by an adversarial probe of the chart: each is
refused with a message naming the value and the fix, or renders what it says (quoted, restricted,
accepted by the API server). One parametrized id per finding."""

from __future__ import annotations

import re

import pytest
from conftest import nested

from chart.chart_checks import (
    MIDDLEWARES_ANNOTATION,
    NGINX,
    assert_all_valid,
    restricted_violations,
)
from chart.helm_template import (
    CHART_DIR,
    NAMESPACE,
    HelmFailedError,
    by_kind,
    one,
    parse_docs,
    pod_specs,
    render_text,
    run_helm,
)
from chart.k8s_schemas import run_kubeconform

pytestmark = pytest.mark.helm

BCRYPT_LINE = "alice:$2y$05$" + "a" * 53
AUTH = {"auth": {"enabled": True, "users": [BCRYPT_LINE]}}
NGINX_AUTH = {**AUTH, "ingress": {"flavor": "nginx"}}
URL_SOURCE = {"source": "url", "sha256": "ab" * 32, "url": {"existingSecret": "blob-url"}}
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
TRAEFIK = "traefik.ingress.kubernetes.io/"


def render(helm: str, values: dict, *extra_args: str) -> list[dict]:
    return parse_docs(render_text(values, helm=helm, extra_args=extra_args))


def refusal(helm: str, values: dict) -> str:
    with pytest.raises(HelmFailedError) as failure:
        render_text(values, helm=helm)
    return failure.value.stderr


def merged(*parts: dict) -> dict:
    """Values trees merged left to right (maps key by key)."""
    result: dict = {}
    for part in parts:
        result = _merge(result, part)
    return result


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if both else value
    return out


# --- 1. user annotations and labels that the chart sets itself ----------------------------------

OWN_MIDDLEWARE = {MIDDLEWARES_ANNOTATION: "models-x@kubernetescrd"}
CLASHES = [
    pytest.param(
        merged(AUTH, {"ingress": {"annotations": OWN_MIDDLEWARE}}),
        f"ingress.annotations sets {MIDDLEWARES_ANNOTATION}",
        id="traefik-middlewares-drop-basic-auth",
    ),
    pytest.param(
        {"commonAnnotations": OWN_MIDDLEWARE},
        f"commonAnnotations sets {MIDDLEWARES_ANNOTATION}",
        id="common-annotation-drops-https-redirect",
    ),
    pytest.param(
        {"ingress": {"annotations": {f"{TRAEFIK}router.entrypoints": "web"}}},
        f"ingress.annotations sets {TRAEFIK}router.entrypoints",
        id="traefik-entrypoints",
    ),
    pytest.param(
        {"ingress": {"annotations": {f"{TRAEFIK}router.tls": "false"}}},
        f"ingress.annotations sets {TRAEFIK}router.tls,",
        id="traefik-router-tls",
    ),
    pytest.param(
        {"commonAnnotations": {f"{TRAEFIK}router.tls.options": "default@internal"}},
        f"commonAnnotations sets {TRAEFIK}router.tls.options",
        id="traefik-tls-options",
    ),
    pytest.param(
        merged(NGINX_AUTH, {"ingress": {"annotations": {f"{NGINX}auth-type": "none"}}}),
        f"ingress.annotations sets {NGINX}auth-type",
        id="nginx-auth-type",
    ),
    pytest.param(
        merged(NGINX_AUTH, {"commonAnnotations": {f"{NGINX}auth-secret": "other"}}),
        f"commonAnnotations sets {NGINX}auth-secret",
        id="nginx-auth-secret",
    ),
    pytest.param(
        {"ingress": {"flavor": "nginx", "annotations": {f"{NGINX}force-ssl-redirect": "false"}}},
        f"ingress.annotations sets {NGINX}force-ssl-redirect",
        id="nginx-https-redirect",
    ),
    pytest.param(
        {
            "ingress": {
                "flavor": "nginx",
                "annotations": {f"{NGINX}allowlist-source-range": "0.0.0.0/0"},
            },
            "ipAllowList": {"enabled": True, "sourceRange": ["10.0.0.0/8"]},
        },
        f"ingress.annotations sets {NGINX}allowlist-source-range",
        id="nginx-allowlist-alias",
    ),
    pytest.param(
        {"commonLabels": {"app.kubernetes.io/name": "other"}},
        "commonLabels sets app.kubernetes.io/name",
        id="common-label-breaks-selector-name",
    ),
    pytest.param(
        {"commonLabels": {"app.kubernetes.io/instance": "other"}},
        "commonLabels sets app.kubernetes.io/instance",
        id="common-label-breaks-selector-instance",
    ),
    pytest.param(
        {"podLabels": {"app.kubernetes.io/instance": "other"}},
        "podLabels sets app.kubernetes.io/instance",
        id="pod-label-breaks-selector",
    ),
    pytest.param(
        {"commonLabels": {"team": "a"}, "podLabels": {"team": "b"}},
        "podLabels sets team, which the chart (or commonLabels) sets itself",
        id="pod-label-repeats-common-label",
    ),
    pytest.param(
        {"commonLabels": {"bad key": "x"}},
        'commonLabels has the key "bad key", which is not a label key',
        id="common-label-key-invalid",
    ),
    pytest.param(
        {"podLabels": {"a/b/c": "x"}},
        'podLabels has the key "a/b/c", which is not a label key',
        id="pod-label-key-invalid",
    ),
    pytest.param(
        {"podAnnotations": {"checksum/config": "pinned"}},
        "podAnnotations sets checksum/config",
        id="pod-annotation-pins-rollout-checksum",
    ),
    pytest.param(
        {"serviceMonitor": {"enabled": True, "labels": {"app.kubernetes.io/name": "x"}}},
        "serviceMonitor.labels sets app.kubernetes.io/name",
        id="service-monitor-label",
    ),
]


@pytest.mark.parametrize(("values", "message"), CLASHES)
def test_a_key_the_chart_sets_itself_is_refused(helm, values, message):
    assert message in refusal(helm, values)


def test_the_refusal_names_the_way_to_add_a_middleware(helm):
    values = {"ingress": {"annotations": OWN_MIDDLEWARE}}
    assert "ingress.extraMiddlewares" in refusal(helm, values)


def test_extra_middlewares_follow_the_charts_own_on_the_ingress(helm):
    values = merged(AUTH, {"ingress": {"extraMiddlewares": ["models-compress@kubernetescrd"]}})
    ingress = one(render(helm, values), "Ingress", "release-rmodelpack")
    refs = ingress["metadata"]["annotations"][MIDDLEWARES_ANNOTATION].split(",")
    assert refs == [
        f"{NAMESPACE}-release-rmodelpack-auth@kubernetescrd",
        "models-compress@kubernetescrd",
    ]


def test_extra_middlewares_follow_the_charts_own_on_the_ingress_route(helm):
    values = merged(
        AUTH, {"ingress": {"kind": "IngressRoute", "extraMiddlewares": ["compress@file"]}}
    )
    route = one(render(helm, values), "IngressRoute", "release-rmodelpack")
    names = [m["name"] for m in route["spec"]["routes"][0]["middlewares"]]
    assert names == ["release-rmodelpack-auth", "compress@file"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param(
            {"ingress": {"flavor": "nginx", "extraMiddlewares": ["compress@file"]}},
            "ingress.extraMiddlewares are Traefik Middlewares",
            id="extra-middlewares-need-traefik",
        ),
        pytest.param(
            {"ingress": {"extraMiddlewares": ["a,b@file"]}},
            "at '/ingress/extraMiddlewares/0'",
            id="extra-middleware-with-a-comma",
        ),
    ],
)
def test_extra_middlewares_are_checked(helm, values, message):
    assert message in refusal(helm, values)


# --- 2. free text printed unquoted: newlines inject YAML; "null", "true", "123" change type ------

INJECTIONS = [
    ("networkPolicy.ingressController.namespace", "traefik\n- namespaceSelector: {}"),
    ("networkPolicy.metrics.namespace", "kube-system\n- namespaceSelector: {}"),
    ("tls.certificate.duration", "2160h\n  isCA: true"),
    ("tls.certificate.renewBefore", "360h\n  isCA: true"),
    ("tls.issuerRef.group", "cert-manager.io\n    kind: Issuer"),
    ("tmpDir.sizeLimit", "256Mi\n            medium: Memory"),
    ("model.url.sizeLimit", "2Gi\n            medium: Memory"),
    ("pdb.maxUnavailable", "1\n  unhealthyPodEvictionPolicy: AlwaysAllow"),
    ("serviceMonitor.interval", "30s\n      honorLabels: true"),
    ("serviceMonitor.scrapeTimeout", "10s\n      honorLabels: true"),
    ("updateStrategy.rollingUpdate.maxSurge", "1"),
    ("ipAllowList.sourceRange", ["10.0.0.0/8,0.0.0.0/0"]),
]


@pytest.mark.parametrize(("dotted", "value"), [pytest.param(d, v, id=d) for d, v in INJECTIONS])
def test_free_text_fields_have_a_pattern(helm, dotted, value):
    assert f"at '/{dotted.replace('.', '/')}" in refusal(helm, nested(dotted, value))


def test_free_text_stays_one_string_past_the_schema(helm):
    values = {
        "networkPolicy": {"ingressController": {"namespace": "traefik\n- namespaceSelector: {}"}},
        "tls": {"certificate": {"duration": "2160h\n  isCA: true"}},
        "tmpDir": {"sizeLimit": "256Mi\n            medium: Memory"},
        "serviceMonitor": {"enabled": True, "interval": "30s\n      honorLabels: true"},
        "pdb": {"maxUnavailable": "50%\n  unhealthyPodEvictionPolicy: AlwaysAllow"},
    }
    docs = render(helm, values, "--skip-schema-validation")
    peers = one(docs, "NetworkPolicy")["spec"]["ingress"][0]["from"]
    assert len(peers) == 3
    assert peers[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == (
        "traefik\n- namespaceSelector: {}"
    )
    certificate = one(docs, "Certificate")["spec"]
    assert "isCA" not in certificate and certificate["duration"] == "2160h\n  isCA: true"
    tmp = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"][0]["emptyDir"]
    assert tmp == {"sizeLimit": "256Mi\n            medium: Memory"}
    endpoint = one(docs, "ServiceMonitor")["spec"]["endpoints"][0]
    assert "honorLabels" not in endpoint
    assert "unhealthyPodEvictionPolicy" not in one(docs, "PodDisruptionBudget")["spec"]
    # A count stays a number: the API server reads the string "1" as a malformed percentage.
    assert one(render(helm, {}), "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def _secret_name(docs):
    return one(docs, "Ingress", "release-rmodelpack")["spec"]["tls"][0]["secretName"]


def _auth_secret_annotation(docs):
    return one(docs, "Ingress")["metadata"]["annotations"][f"{NGINX}auth-secret"]


def _auth_middleware_secret(docs):
    return one(docs, "Middleware", "release-rmodelpack-auth")["spec"]["basicAuth"]["secret"]


def _issuer_ref_name(docs):
    return one(docs, "Certificate")["spec"]["issuerRef"]["name"]


def _ca_secret(docs):
    return one(docs, "Issuer")["spec"]["ca"]["secretName"]


def _claim_name(docs):
    volumes = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    return next(v for v in volumes if v["name"] == "model")["persistentVolumeClaim"]["claimName"]


def _service_account(docs):
    return one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]


def _credentials_secret(docs):
    env = one(docs, "Pod")["spec"]["containers"][0]["env"]
    return next(e for e in env if e["name"] == "AUTH_USERNAME")["valueFrom"]["secretKeyRef"]["name"]


def _test_pod_pull_secret(docs):
    return one(docs, "Pod")["spec"]["imagePullSecrets"][0]["name"]


EXISTING_AUTH = {"auth": {"enabled": True, "existingSecret": "null"}}
NAME_FIELDS = [
    ("tls.secretName", {"tls": {"secretName": "null", "certificate": {"create": False}}},
     _secret_name, "null"),
    ("auth.existingSecret/nginx", merged(EXISTING_AUTH, {"ingress": {"flavor": "nginx"}}),
     _auth_secret_annotation, "null"),
    ("auth.existingSecret/traefik", EXISTING_AUTH, _auth_middleware_secret, "null"),
    ("tls.issuerRef.name", {"tls": {"issuerRef": {"name": "true"}}}, _issuer_ref_name, "true"),
    ("tls.issuer.ca.secretName",
     {"tls": {"issuer": {"create": True, "type": "ca", "ca": {"secretName": "123"}}}},
     _ca_secret, "123"),
    ("model.pvc.claimName", {"model": {"source": "pvc", "pvc": {"claimName": "null"}}},
     _claim_name, "null"),
    ("serviceAccount.name", {"serviceAccount": {"name": "true"}}, _service_account, "true"),
    ("tests.ingress.credentialsSecret",
     merged(AUTH, {"tests": {"ingress": {"enabled": True, "credentialsSecret": "null"}}}),
     _credentials_secret, "null"),
    ("imagePullSecrets", {"imagePullSecrets": ["true"]}, _test_pod_pull_secret, "true"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("values", "field", "expected"),
    [pytest.param(v, f, e, id=i) for i, v, f, e in NAME_FIELDS],
)
def test_a_name_that_looks_like_a_yaml_scalar_stays_a_string(helm, values, field, expected):
    assert field(render(helm, values)) == expected


def test_names_that_look_like_yaml_scalars_render_valid_objects(helm, kubeconform, k8s_schema_root):
    values = merged(
        {"tls": {"secretName": "null", "certificate": {"create": False}}},
        {"serviceAccount": {"name": "true"}, "imagePullSecrets": ["123"]},
        {"model": {"source": "pvc", "pvc": {"claimName": "null"}}},
    )
    manifests = render_text(values, helm=helm)
    assert_all_valid(run_kubeconform(kubeconform, k8s_schema_root, "1.32.0", manifests), manifests)


# --- 3. Pod Security "restricted" cannot be lost -------------------------------------------------

WEAKENED = [
    ("podSecurityContext.runAsUser", 0),
    ("podSecurityContext.runAsNonRoot", False),
    ("podSecurityContext.seccompProfile.type", "Unconfined"),
    ("containerSecurityContext.enabled", False),
    ("containerSecurityContext.runAsUser", 0),
    ("containerSecurityContext.runAsNonRoot", False),
    ("containerSecurityContext.privileged", True),
    ("containerSecurityContext.allowPrivilegeEscalation", True),
    ("containerSecurityContext.capabilities.add", ["SYS_ADMIN"]),
    ("containerSecurityContext.capabilities.drop", ["NET_RAW"]),
    ("containerSecurityContext.seccompProfile.type", "Unconfined"),
]


@pytest.mark.parametrize(("dotted", "value"), [pytest.param(d, v, id=d) for d, v in WEAKENED])
def test_values_that_break_restricted_are_refused(helm, dotted, value):
    pointer = "/" + dotted.replace(".", "/")
    assert f"at '{pointer}" in refusal(helm, nested(dotted, value))


NULLED = {
    "model": URL_SOURCE,
    "podSecurityContext": {"enabled": False},
    "containerSecurityContext": {
        "runAsNonRoot": None,
        "allowPrivilegeEscalation": None,
        "capabilities": None,
        "seccompProfile": None,
    },
}


@pytest.mark.parametrize("tool", ["helm", "helm3"])
def test_nulled_fields_still_give_restricted_pods(require_tool, tool):
    """Helm deletes a value set to null; the templates put back what "restricted" needs."""
    docs = parse_docs(render_text(NULLED, helm=require_tool(tool)))
    specs = pod_specs(docs)
    assert {name.split("/")[0] for name, _ in specs} == {"Deployment", "Pod"}
    assert len(specs[0][1]["initContainers"]) == 1
    for name, pod in specs:
        assert restricted_violations(pod) == [], name


def test_a_host_path_extra_volume_is_refused(helm):
    values = {"extraVolumes": [{"name": "host", "hostPath": {"path": "/"}}]}
    assert "extraVolumes[0] (host) is a hostPath volume" in refusal(helm, values)


# --- 4. runtime.workers null needs a CPU request the chart can read ------------------------------


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        pytest.param({"requests": {"cpu": None}}, "resources.requests.cpu is not set", id="no-cpu"),
        pytest.param(
            {"requests": {"cpu": None, "memory": None}, "limits": {"memory": None}},
            "resources.requests.cpu is not set",
            id="no-resources",
        ),
        pytest.param({"requests": {"cpu": "0"}}, "gives 0 workers", id="zero-cpu"),
        pytest.param({"requests": {"cpu": "1k"}}, "cpu 1k is not in cores", id="cpu-1k"),
    ],
)
def test_auto_workers_without_a_readable_cpu_request_are_refused(helm, resources, message):
    stderr = refusal(helm, {"resources": resources, "runtime": {"workers": None}})
    assert message in stderr and "runtime.workers" in stderr
    render(helm, {"resources": resources, "runtime": {"workers": 2}})  # the fix it names


def test_auto_workers_with_an_exponent_cpu_string_are_refused(helm, tmp_path):
    """A quoted "2e3" is 2000 cores to Kubernetes; the chart's check reads cores and millicores
    only, so it refuses the quantity rather than let it past the 64-worker bound."""
    values = tmp_path / "values.yaml"
    values.write_text('resources: {requests: {cpu: "2e3"}}\nruntime: {workers: null}\n')
    with pytest.raises(HelmFailedError) as failure:
        render_text(values_files=[values], helm=helm)
    assert "cpu 2e3 is not in cores" in failure.value.stderr


# --- 5. values the schema accepted and the API server refuses ------------------------------------


def test_recreate_strategy_has_no_rolling_update(helm):
    deployment = one(render(helm, {"updateStrategy": {"type": "Recreate"}}), "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_a_deployment_name_must_be_a_service_name(helm):
    for release in ("1model", "my.model"):
        with pytest.raises(HelmFailedError) as failure:
            run_helm(["template", release, str(CHART_DIR), "-n", NAMESPACE], helm=helm)
        assert f"the release name {release} gives the resource name" in failure.value.stderr


REFUSED = [
    ("rolling-update-cannot-progress",
     {"updateStrategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}},
     "maxSurge and maxUnavailable are both 0"),
    ("grace-not-above-prestop", {"terminationGracePeriodSeconds": 5},
     "terminationGracePeriodSeconds=5 must be above preStopSleepSeconds=5"),
    ("ip-host-with-leading-zeros", {"ingress": {"host": "010.0.0.1"}},
     "ingress.host: 010.0.0.1 is an IP address"),
    ("ip-host", {"ingress": {"host": "10.0.0.1"}}, "ingress.host: 10.0.0.1 is an IP address"),
    ("extra-volume-named-tmp", {"extraVolumes": [{"name": "tmp", "emptyDir": {}}]},
     "extraVolumes[0] is named tmp"),
    ("extra-mount-of-model",
     {"extraVolumeMounts": [{"name": "model", "mountPath": "/srv"}]},
     "extraVolumeMounts[0] mounts model"),
    ("extra-mount-at-tmp", {"extraVolumes": [{"name": "x", "emptyDir": {}}],
                            "extraVolumeMounts": [{"name": "x", "mountPath": "/tmp"}]},
     "extraVolumeMounts[0] mounts at /tmp"),
]  # fmt: skip


@pytest.mark.parametrize(("values", "message"), [pytest.param(v, m, id=i) for i, v, m in REFUSED])
def test_values_the_api_server_refuses_are_refused(helm, values, message):
    assert message in refusal(helm, values)


SCHEMA_REFUSED = [
    ("livenessProbe.successThreshold", 2),
    ("startupProbe.successThreshold", 2),
    ("topologySpread.topologyKeys", ["kubernetes.io/hostname", "kubernetes.io/hostname"]),
    ("replicaCount", 2**31),
    ("revisionHistoryLimit", 2**31),
    ("readinessProbe.periodSeconds", 2**31),
    ("topologySpread.maxSkew", 2**31),
    ("commonLabels", {"team": "x" * 64}),
    ("commonLabels", {"team": "-x"}),
    ("nameOverride", "Model"),
    ("fullnameOverride", "1model"),
    ("fullnameOverride", "my.model"),
]


@pytest.mark.parametrize(
    ("dotted", "value"),
    [pytest.param(d, v, id=f"{d}={str(v)[:24]}") for d, v in SCHEMA_REFUSED],
)
def test_the_schema_refuses_what_the_api_server_refuses(helm, dotted, value):
    assert f"at '/{dotted.replace('.', '/')}" in refusal(helm, nested(dotted, value))


def test_ingress_paths_with_segments_the_api_server_refuses(helm):
    for path in ["/a//b", "/a/../b", "/a/./b", "/a/..", "/a/.", "/a%2fb"]:
        assert "at '/ingress/path'" in refusal(helm, {"ingress": {"path": path}}), path
    for path in ["/", "/models/", "/a.b/..c/...d", "/x%20y"]:
        render(helm, {"ingress": {"path": path}})


def test_name_override_leaves_room_for_the_test_pods_label(helm):
    assert "at '/nameOverride'" in refusal(helm, {"nameOverride": "n" * 59})
    label = one(render(helm, {"nameOverride": "n" * 58}), "Pod")["metadata"]["labels"]
    assert len(label["app.kubernetes.io/name"]) <= 63
    assert LABEL_VALUE.match(label["app.kubernetes.io/name"])


@pytest.mark.parametrize("tag", ["a" * 62 + ".b", "_" + "a" * 62 + "-b", "_1.0"])
def test_the_version_label_from_a_long_or_odd_tag_is_a_valid_label(helm, tag):
    docs = render(helm, {"image": {"tag": tag}})
    label = one(docs, "Deployment")["metadata"]["labels"]["app.kubernetes.io/version"]
    assert LABEL_VALUE.match(label) and len(label) <= 63 and label


# --- 6. smaller refusals and number formats ------------------------------------------------------

KEDA = {"autoscaling": {"enabled": False}, "keda": {"enabled": True}}
CPU_AND_MEMORY = [
    {"type": kind, "metricType": "Utilization", "metadata": {"value": "70"}}
    for kind in ("cpu", "memory")
]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param(
            merged(KEDA, {"autoscaling": {"targetCPUUtilizationPercentage": None}}),
            "autoscaling.targetCPUUtilizationPercentage, which is null",
            id="keda-cpu-trigger-without-target",
        ),
        pytest.param(
            merged(KEDA, {"keda": {"minReplicas": 0, "triggers": CPU_AND_MEMORY}}),
            "keda.minReplicas=0 needs a trigger other than cpu or memory",
            id="keda-scale-to-zero-on-cpu-and-memory",
        ),
        pytest.param(
            {"extraEnv": [{"name": "RMP_WORKERS", "value": "8"}]},
            "extraEnv[0] sets RMP_WORKERS, which the chart sets itself: use runtime.workers",
            id="extra-env-overrides-chart-env",
        ),
    ],
)
def test_small_mistakes_are_refused(helm, values, message):
    assert message in refusal(helm, values)


def test_keda_scales_to_zero_only_with_a_trigger_other_than_cpu(helm):
    message = "keda.minReplicas=0 needs a trigger other than cpu or memory"
    assert message in refusal(helm, merged(KEDA, {"keda": {"minReplicas": 0}}))
    trigger = {"type": "prometheus", "metadata": {"serverAddress": "http://p:9090",
               "query": "sum(up)", "threshold": "1"}}  # fmt: skip
    values = merged(KEDA, {"keda": {"minReplicas": 0, "triggers": [trigger]}})
    assert one(render(helm, values), "ScaledObject")["spec"]["minReplicaCount"] == 0


def test_large_limits_print_as_integers(helm):
    rate = {"rateLimit": {"enabled": True, "average": 1000000, "burst": 2000000}}
    nginx = merged(rate, {"ingress": {"flavor": "nginx"}, "rateLimit": {"connections": 1000000}})
    annotations = one(render(helm, nginx), "Ingress")["metadata"]["annotations"]
    assert annotations[f"{NGINX}limit-rps"] == "1000000"
    assert annotations[f"{NGINX}limit-connections"] == "1000000"
    middleware = one(render(helm, rate), "Middleware", "release-rmodelpack-ratelimit")
    assert middleware["spec"]["rateLimit"]["average"] == 1000000
    assert middleware["spec"]["rateLimit"]["burst"] == 2000000


def test_the_image_pull_secrets_example_in_values_yaml_is_accepted(helm):
    text = (CHART_DIR / "values.yaml").read_text()
    example = text.split("## imagePullSecrets:\n", 1)[1].split("\nimagePullSecrets:", 1)[0]
    items = [line.removeprefix("##").strip() for line in example.splitlines()]
    names = [item.removeprefix("- ") for item in items if item.startswith("- ")]
    assert names
    docs = render(helm, {"imagePullSecrets": names})
    pulls = one(docs, "Deployment")["spec"]["template"]["spec"]["imagePullSecrets"]
    assert pulls == [{"name": name} for name in names]
    assert by_kind(docs, "Pod")[0]["spec"]["imagePullSecrets"] == pulls
