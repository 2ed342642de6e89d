"""Traefik Ingress/IngressRoute, Middlewares, TLSOption, ingress-nginx annotations and cert-manager
objects agree."""

from __future__ import annotations

import jmespath
import pytest
import yaml

from chart.chart_checks import (
    MIDDLEWARES_ANNOTATION,
    assert_auth_secrets_resolve,
    assert_certificate_secret_is_served,
    assert_one_flavor,
    assert_router_references_resolve,
    crd_refs,
)
from chart.helm_template import SCENARIOS, by_kind, one, render_chart, scenario_files

pytestmark = pytest.mark.helm


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_referenced_middleware_and_tls_option_is_rendered(scenario_docs, scenario):
    assert_router_references_resolve(scenario_docs(scenario))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_certificate_secret_is_the_one_the_router_serves(scenario_docs, scenario):
    assert_certificate_secret_is_served(scenario_docs(scenario))


def existing_auth_secrets(scenario: str) -> set[str]:
    if scenario == "default":
        return set()
    values = yaml.safe_load(scenario_files()[scenario].read_text())
    return {name} if (name := (values.get("auth") or {}).get("existingSecret")) else set()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_auth_secret_a_router_names_is_rendered_with_its_key(scenario_docs, scenario):
    assert_auth_secrets_resolve(scenario_docs(scenario), existing_auth_secrets(scenario))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_render_uses_one_ingress_flavor(scenario_docs, scenario):
    assert_one_flavor(scenario_docs(scenario))


def test_auth_secret_check_catches_a_wrong_key(helm):
    """Control: a Traefik-keyed Secret behind an nginx Ingress fails the check above."""
    docs = render_chart(
        {
            "ingress": {"flavor": "nginx"},
            "auth": {"enabled": True, "users": ["a:$2b$12$" + "a" * 53]},
        },
        helm=helm,
    )
    one(docs, "Secret")["data"] = {"users": one(docs, "Secret")["data"]["auth"]}
    with pytest.raises(AssertionError):
        assert_auth_secrets_resolve(docs)


def test_default_ingress_is_traefik_websecure_with_tls_and_http_redirect(scenario_docs):
    docs = scenario_docs("default")
    main = one(docs, "Ingress", "release-rmodelpack")
    annotations = main["metadata"]["annotations"]
    assert main["spec"]["ingressClassName"] == "traefik"
    assert annotations["traefik.ingress.kubernetes.io/router.entrypoints"] == "websecure"
    assert annotations["traefik.ingress.kubernetes.io/router.tls"] == "true"
    assert main["spec"]["tls"] == [
        {"hosts": ["model.example.com"], "secretName": "release-rmodelpack-tls"}
    ]
    redirect = one(docs, "Ingress", "release-rmodelpack-http-redirect")
    redirect_annotations = redirect["metadata"]["annotations"]
    assert redirect_annotations["traefik.ingress.kubernetes.io/router.entrypoints"] == "web"
    assert crd_refs(redirect_annotations[MIDDLEWARES_ANNOTATION]) == [
        "release-rmodelpack-redirect-https"
    ]
    assert one(docs, "Middleware")["spec"] == {
        "redirectScheme": {"scheme": "https", "permanent": True}
    }
    assert one(docs, "TLSOption")["spec"]["minVersion"] == "VersionTLS12"
    backend = jmespath.search("spec.rules[0].http.paths[0].backend.service", main)
    assert backend == {"name": one(docs, "Service")["metadata"]["name"], "port": {"name": "http"}}


def test_everything_chains_allowlist_ratelimit_auth_buffering_in_that_order(scenario_docs):
    docs = scenario_docs("everything")
    main = one(docs, "Ingress", "release-boston")
    names = crd_refs(main["metadata"]["annotations"][MIDDLEWARES_ANNOTATION])
    assert names == [
        "release-boston-ipallowlist",
        "release-boston-ratelimit",
        "release-boston-auth",
        "release-boston-buffering",
    ]
    auth = one(docs, "Middleware", "release-boston-auth")["spec"]["basicAuth"]
    assert auth == {"secret": "release-boston-auth", "realm": "boston-rf", "removeHeader": True}
    buffering = one(docs, "Middleware", "release-boston-buffering")["spec"]["buffering"]
    assert buffering["maxRequestBodyBytes"] == 2097152
    allow = one(docs, "Middleware", "release-boston-ipallowlist")["spec"]["ipAllowList"]
    assert allow == {"sourceRange": ["10.0.0.0/8", "203.0.113.0/24"], "ipStrategy": {"depth": 1}}


def test_chart_issuer_is_acme_http01_through_traefik(scenario_docs):
    docs = scenario_docs("everything")
    issuer = one(docs, "Issuer")
    assert issuer["spec"]["acme"]["server"] == "https://acme-v02.api.letsencrypt.org/directory"
    solver = issuer["spec"]["acme"]["solvers"][0]
    assert solver == {"http01": {"ingress": {"ingressClassName": "traefik"}}}
    issuer_ref = one(docs, "Certificate")["spec"]["issuerRef"]
    assert issuer_ref == {
        "name": issuer["metadata"]["name"],
        "kind": "Issuer",
        "group": "cert-manager.io",
    }


def test_default_certificate_uses_the_existing_staging_cluster_issuer(scenario_docs):
    certificate = one(scenario_docs("default"), "Certificate")
    assert certificate["spec"]["issuerRef"]["kind"] == "ClusterIssuer"
    assert certificate["spec"]["issuerRef"]["name"] == "letsencrypt-staging"
    assert certificate["spec"]["dnsNames"] == ["model.example.com"]


@pytest.mark.parametrize(
    ("issuer_type", "expected"),
    [
        ("acme-staging", "acme"),
        ("selfSigned", "selfSigned"),
        ("ca", "ca"),
    ],
)
def test_issuer_types(helm, issuer_type, expected):
    issuer = {"create": True, "type": issuer_type, "acme": {"email": "a@example.com"}}
    issuer["ca"] = {"secretName": "private-ca"}
    docs = render_chart({"tls": {"issuer": issuer}}, show_only=["templates/issuer.yaml"], helm=helm)
    assert list(docs[0]["spec"]) == [expected]


def test_pvc_scenario_routes_with_an_ingressroute(scenario_docs):
    docs = scenario_docs("model-pvc")
    assert by_kind(docs, "Ingress") == []
    route = one(docs, "IngressRoute", "release-rmodelpack")
    assert route["spec"]["entryPoints"] == ["websecure"]
    assert route["spec"]["routes"][0]["match"] == (
        "Host(`boston.internal.example.com`) && PathPrefix(`/`)"
    )
    assert route["spec"]["routes"][0]["services"] == [
        {"name": "release-rmodelpack", "port": "http"}
    ]
    redirect = one(docs, "IngressRoute", "release-rmodelpack-http-redirect")
    assert redirect["spec"]["entryPoints"] == ["web"]
    assert one(docs, "Issuer")["spec"] == {"selfSigned": {}}


def test_no_tls_serves_plain_http_only(scenario_docs):
    docs = scenario_docs("no-tls")
    ingress = one(docs, "Ingress")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["traefik.ingress.kubernetes.io/router.entrypoints"] == "web"
    assert "traefik.ingress.kubernetes.io/router.tls" not in annotations
    assert "tls" not in ingress["spec"]
    for kind in ("Certificate", "Issuer", "TLSOption", "Middleware"):
        assert by_kind(docs, kind) == [], kind


def test_existing_secrets_are_referenced_not_created(scenario_docs):
    docs = scenario_docs("existing-secret")
    assert by_kind(docs, "Secret") == []
    assert by_kind(docs, "Certificate") == []
    assert one(docs, "Middleware", "release-rmodelpack-auth")["spec"]["basicAuth"]["secret"] == (
        "boston-htpasswd"
    )
    assert jmespath.search(
        "spec.tls[0].secretName", one(docs, "Ingress", "release-rmodelpack")
    ) == ("boston-tls-from-keyvault")


def test_ingress_disabled_renders_no_traefik_objects(helm):
    docs = render_chart({"ingress": {"enabled": False}}, helm=helm)
    kinds = {doc["kind"] for doc in docs}
    assert kinds.isdisjoint({"Ingress", "IngressRoute", "Middleware", "TLSOption", "Certificate"})
