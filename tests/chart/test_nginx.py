"""ingress.flavor=nginx: one Ingress for ingress-nginx carrying auth, limits, the allow list and the
https redirect as annotations; no Traefik object; cert-manager and the NetworkPolicy follow."""

from __future__ import annotations

import base64

import bcrypt
import jmespath
import pytest

from chart.chart_checks import NGINX, TRAEFIK_KINDS
from chart.helm_template import HelmFailedError, by_kind, one, render_chart

pytestmark = pytest.mark.helm

CAROL_PASSWORD = "ci-carol-Example-Passw0rd"  # its bcrypt hash is in chart/ci/nginx-values.yaml
BCRYPT_LINE = "dave:$2b$12$" + "a" * 53
INGRESS = ["templates/ingress.yaml"]


def nginx_annotations(ingress: dict) -> dict[str, str]:
    annotations = ingress["metadata"].get("annotations", {})
    return {k.removeprefix(NGINX): v for k, v in annotations.items() if k.startswith(NGINX)}


def nginx_ingress(helm: str, values: dict) -> dict:
    return render_chart({"ingress": {"flavor": "nginx"}, **values}, show_only=INGRESS, helm=helm)[0]


def test_nginx_scenario_is_one_annotated_ingress_and_no_traefik_object(scenario_docs):
    docs = scenario_docs("nginx")
    assert {doc["kind"] for doc in docs}.isdisjoint(TRAEFIK_KINDS)
    ingress = one(docs, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert not any(key.startswith("traefik.") for key in ingress["metadata"]["annotations"])
    assert nginx_annotations(ingress) == {
        "proxy-body-size": "2097152",
        "proxy-read-timeout": "95",
        "proxy-send-timeout": "95",
        "ssl-redirect": "true",
        "force-ssl-redirect": "true",
        "whitelist-source-range": "10.0.0.0/8,203.0.113.0/24",
        "limit-rps": "20",
        "limit-burst-multiplier": "3",
        "limit-connections": "10",
        "auth-type": "basic",
        "auth-secret": "release-rmodelpack-auth",
        "auth-secret-type": "auth-file",
        "auth-realm": "boston-rf scoring",
    }
    backend = jmespath.search("spec.rules[0].http.paths[0].backend.service", ingress)
    assert backend == {"name": one(docs, "Service")["metadata"]["name"], "port": {"name": "http"}}


def test_nginx_auth_secret_holds_the_bcrypt_lines_under_auth(scenario_docs):
    secret = one(scenario_docs("nginx"), "Secret", "release-rmodelpack-auth")
    assert list(secret["data"]) == ["auth"]
    name, digest = base64.b64decode(secret["data"]["auth"]).decode().split(":", 1)
    assert name == "carol"
    assert bcrypt.checkpw(CAROL_PASSWORD.encode(), digest.encode())


def test_nginx_certificate_feeds_the_ingress_and_http01_solves_through_nginx(scenario_docs):
    docs = scenario_docs("nginx")
    certificate = one(docs, "Certificate")
    ingress = one(docs, "Ingress")
    assert ingress["spec"]["tls"] == [
        {"hosts": ["boston.example.com"], "secretName": certificate["spec"]["secretName"]}
    ]
    assert certificate["spec"]["dnsNames"] == ["boston.example.com"]
    issuer = one(docs, "Issuer")
    assert certificate["spec"]["issuerRef"]["name"] == issuer["metadata"]["name"]
    assert issuer["spec"]["acme"]["solvers"] == [
        {"http01": {"ingress": {"ingressClassName": "nginx"}}}
    ]


def test_nginx_network_policy_admits_the_ingress_nginx_namespace(scenario_docs):
    [rule] = one(scenario_docs("nginx"), "NetworkPolicy")["spec"]["ingress"]
    assert rule["from"][0] == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}
    }


def test_nginx_test_hook_goes_through_the_ingress_nginx_controller(scenario_docs):
    pod = one(scenario_docs("nginx"), "Pod")
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["INGRESS_SERVICE"] == "ingress-nginx-controller.ingress-nginx.svc.cluster.local"
    assert env["PUBLIC_URL"] == "https://boston.example.com"
    # With auth on, helm-test.sh expects 401 without these credentials, then uses them.
    assert {"AUTH_USERNAME", "AUTH_PASSWORD"} <= env.keys()
    assert container["command"][-1] == "/opt/rmodelpack/runtime/helm-test.sh"


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        ({"average": 100, "burst": 200, "period": "1s"}, {"limit-rps": "100", "multiplier": "2"}),
        ({"average": 10, "burst": 25, "period": "1s"}, {"limit-rps": "10", "multiplier": "3"}),
        ({"average": 30, "burst": 30, "period": "1m"}, {"limit-rpm": "30", "multiplier": "1"}),
        ({"average": 50, "burst": 5, "period": "1s"}, {"limit-rps": "50", "multiplier": "1"}),
    ],
)
def test_rate_limit_maps_to_a_rate_and_a_burst_multiplier(helm, rate, expected):
    annotations = nginx_annotations(nginx_ingress(helm, {"rateLimit": {"enabled": True, **rate}}))
    limits = {k: v for k, v in annotations.items() if k.startswith("limit-")}
    expected = {k: v for k, v in expected.items() if k != "multiplier"} | {
        "limit-burst-multiplier": expected["multiplier"]
    }
    assert limits == expected  # limit-connections stays off at its default of 0


def test_plain_http_nginx_has_no_redirect_and_no_certificate(helm):
    docs = render_chart({"ingress": {"flavor": "nginx"}, "tls": {"enabled": False}}, helm=helm)
    ingress = one(docs, "Ingress")
    assert "tls" not in ingress["spec"]
    assert not {"ssl-redirect", "force-ssl-redirect"} & set(nginx_annotations(ingress))
    assert by_kind(docs, "Certificate") == []
    assert {doc["kind"] for doc in docs}.isdisjoint(TRAEFIK_KINDS)


def test_redirect_can_be_switched_off(helm):
    annotations = nginx_annotations(
        nginx_ingress(helm, {"ingress": {"flavor": "nginx", "httpRedirect": False}})
    )
    assert annotations["ssl-redirect"] == annotations["force-ssl-redirect"] == "false"


def test_existing_secret_is_named_not_created(helm):
    values = {
        "ingress": {"flavor": "nginx"},
        "auth": {"enabled": True, "existingSecret": "kv-htpasswd"},
    }
    docs = render_chart(values, helm=helm)
    assert by_kind(docs, "Secret") == []
    assert nginx_annotations(one(docs, "Ingress"))["auth-secret"] == "kv-htpasswd"


def test_class_and_controller_namespace_can_be_overridden_for_aks_app_routing(helm):
    values = {
        "ingress": {"flavor": "nginx", "className": "webapprouting.kubernetes.azure.com"},
        "networkPolicy": {"ingressController": {"namespace": "app-routing-system"}},
        "tls": {"issuer": {"create": True, "acme": {"email": "a@example.com"}}},
    }
    docs = render_chart(values, helm=helm)
    assert one(docs, "Ingress")["spec"]["ingressClassName"] == "webapprouting.kubernetes.azure.com"
    solver = one(docs, "Issuer")["spec"]["acme"]["solvers"][0]["http01"]["ingress"]
    assert solver == {"ingressClassName": "webapprouting.kubernetes.azure.com"}
    peer = one(docs, "NetworkPolicy")["spec"]["ingress"][0]["from"][0]
    assert peer["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "app-routing-system"
    }


def test_traefik_default_carries_no_nginx_annotation(scenario_docs):
    for ingress in by_kind(scenario_docs("everything"), "Ingress"):
        assert nginx_annotations(ingress) == {}
        assert ingress["spec"]["ingressClassName"] == "traefik"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"ingress": {"flavor": "nginx"}, "rateLimit": {"enabled": True, "period": "10s"}},
            "rateLimit.period=10s: ingress-nginx limits per second or per minute only",
        ),
        (
            {
                "ingress": {"flavor": "nginx"},
                "auth": {"enabled": True, "realm": 'say "hi"', "users": [BCRYPT_LINE]},
            },
            "auth.realm has characters an ingress controller rejects",
        ),
        (
            {"ingress": {"flavor": "nginx", "kind": "IngressRoute"}},
            "ingress.kind=IngressRoute is a Traefik CRD: it needs ingress.flavor=traefik",
        ),
        (
            {"rateLimit": {"enabled": True, "connections": 5}},
            "rateLimit.connections is an ingress-nginx limit (limit-connections)",
        ),
    ],
)
def test_settings_nginx_cannot_honour_are_refused(helm, values, message):
    with pytest.raises(HelmFailedError) as failure:
        render_chart(values, helm=helm)
    assert message in failure.value.stderr


def test_unknown_flavor_is_refused_by_the_schema(helm):
    with pytest.raises(HelmFailedError) as failure:
        render_chart({"ingress": {"flavor": "haproxy"}}, helm=helm)
    assert "/ingress/flavor" in failure.value.stderr
    assert "'traefik', 'nginx'" in failure.value.stderr
