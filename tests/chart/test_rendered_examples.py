"""The values `rmodelpack render` writes for every example pass the same bar as the scenarios:
helm lint --strict, kubeconform -strict (1.32 and 1.35, nothing skipped), "restricted" pods,
consistent Traefik/ingress-nginx/cert-manager references, and no plaintext password."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from chart.chart_checks import (
    assert_all_valid,
    assert_auth_secrets_resolve,
    assert_certificate_secret_is_served,
    assert_one_flavor,
    assert_router_references_resolve,
    hardening_gaps,
    restricted_violations,
)
from chart.helm_template import (
    CHART_DIR,
    KUBE_VERSIONS,
    parse_docs,
    pod_specs,
    render_text,
    run_helm,
)
from chart.k8s_schemas import run_kubeconform

EXAMPLES = sorted((CHART_DIR.parent / "examples").glob("*/rmodel.yaml"))

pytestmark = pytest.mark.helm


def passwords_for(manifest: Path) -> dict[str, str]:
    service = yaml.safe_load(manifest.read_text()).get("service") or {}
    users = (service.get("auth") or {}).get("users", [])
    return {u["password_env"]: f"pw-{secrets.token_hex(8)}" for u in users if "password_env" in u}


@pytest.fixture(scope="module", params=EXAMPLES, ids=lambda p: p.parent.name)
def rendered_example(request, tmp_path_factory):
    manifest: Path = request.param
    passwords = passwords_for(manifest)
    out = tmp_path_factory.mktemp(manifest.parent.name) / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "rmodelpack", "render", str(manifest), "-o", str(out)],
        env={**os.environ, **passwords},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / "values.yaml", passwords


def test_examples_exist():
    assert len(EXAMPLES) >= 1


def test_rendered_values_lint_strict(helm, rendered_example):
    values, _ = rendered_example
    output = run_helm(["lint", "--strict", str(CHART_DIR), "--values", str(values)], helm=helm)
    assert "0 chart(s) failed" in output


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_rendered_values_pass_kubeconform(
    helm, kubeconform, k8s_schema_root, rendered_example, kube_version
):
    values, _ = rendered_example
    manifests = render_text(values_files=[values], helm=helm, kube_version=kube_version)
    assert_all_valid(
        run_kubeconform(kubeconform, k8s_schema_root, kube_version, manifests), manifests
    )


def test_rendered_values_make_restricted_pods_and_hide_passwords(helm, rendered_example):
    values, passwords = rendered_example
    text = render_text(values_files=[values], helm=helm)
    for password in passwords.values():
        assert password not in text
        assert base64.b64encode(password.encode()).decode() not in text
    for name, pod in pod_specs(parse_docs(text)):
        assert restricted_violations(pod) == [], name
        assert hardening_gaps(pod) == [], name


def test_rendered_values_route_consistently(helm, rendered_example):
    values, _ = rendered_example
    docs = parse_docs(render_text(values_files=[values], helm=helm))
    assert_router_references_resolve(docs)
    assert_certificate_secret_is_served(docs)
    assert_one_flavor(docs)
    existing = (yaml.safe_load(values.read_text()).get("auth") or {}).get("existingSecret")
    assert_auth_secrets_resolve(docs, {existing} if existing else set())
