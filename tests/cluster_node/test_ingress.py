"""Traefik (built from its Go module) as the ingress controller on the real node, with the
chart's own Ingress, Middleware (basic auth) and TLSOption: over TLS, /predict is 401 without
credentials and 200 with them. The release has a host name of its own (boston.ingress_host: a
second Ingress with the same host would make Traefik answer through that release's basic auth).
Traefik runs in the host network namespace, listening on 127.0.0.1 only (see
testbed/k8s/node/traefik/traefik.yaml for why); curl --resolve sends the release's host name as
SNI and Host while connecting to 127.0.0.1.

cert-manager's controller cannot be built here (the module proxy does not serve
github.com/cert-manager/cert-manager/cmd/controller), so the TLS Secret the chart's Certificate
names is issued by a test CA with openssl, as a CA Issuer would."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cluster.kube import eventually, helm, run

from cluster_node.boston import (
    PASSWORD,
    USER,
    WEBSECURE_PORT,
    create_tls_secret,
    install,
    native_prediction,
    predict_body,
)
from cluster_node.host import listening_pids
from cluster_node.traffic import wait_for_route

RELEASE = "boston"


@dataclass(frozen=True)
class Release:
    rendered: Path
    ca_crt: Path
    host: str


@pytest.fixture(scope="module")
def release(
    traefik: str, module_namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Release]:
    """boston-rf installed behind Traefik with its TLS Secret, and routed."""
    workdir = tmp_path_factory.mktemp("boston-rf-ingress")
    rendered = install(RELEASE, module_namespace, workdir)
    ca_crt = create_tls_secret(module_namespace, workdir)
    yield Release(rendered, ca_crt, wait_for_route(ca_crt, module_namespace))
    helm("uninstall", RELEASE, "-n", module_namespace, "--wait", "--timeout", "120s", check=False)


@pytest.fixture
def websecure(traefik: str, release: Release) -> int:
    return WEBSECURE_PORT


def curl_predict(
    port: int, host: str, ca_crt: Path, body_file: Path, *extra: str
) -> tuple[int, str]:
    """POST /predict to https://host:port with host resolved to 127.0.0.1, verified by our CA."""
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "30", "--resolve", f"{host}:{port}:127.0.0.1",
         "--cacert", str(ca_crt), "-H", "Content-Type: application/json",
         "--data-binary", f"@{body_file}", "-w", "\n%{http_code}", *extra,
         f"https://{host}:{port}/predict"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text, _, status = done.stdout.rpartition("\n")
    return int(status), text


def route_loaded(port: int, host: str, ca_crt: Path, body_file: Path) -> bool:
    """Traefik loads the chart's Ingress and the TLS Secret a few seconds after they appear:
    until then it presents its default self-signed certificate (curl exit 60) or answers 404."""
    done = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "--max-time", "10", "--resolve",
         f"{host}:{port}:127.0.0.1", "--cacert", str(ca_crt), "--data-binary", f"@{body_file}",
         "-w", "%{http_code}", f"https://{host}:{port}/predict"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return done.returncode == 0 and done.stdout != "404"


def test_traefik_serves_the_chart_route_with_basic_auth_over_tls(
    websecure: int, release: Release, tmp_path: Path
) -> None:
    rendered, ca_crt, host = release.rendered, release.ca_crt, release.host
    body = predict_body()
    body_file = tmp_path / "predict.json"
    body_file.write_text(json.dumps(body))

    assert eventually(lambda: route_loaded(websecure, host, ca_crt, body_file), timeout=90)
    status, _ = curl_predict(websecure, host, ca_crt, body_file)
    assert status == 401
    status, _ = curl_predict(websecure, host, ca_crt, body_file, "-u", f"{USER}:wrong-password")
    assert status == 401
    status, text = curl_predict(websecure, host, ca_crt, body_file, "-u", f"{USER}:{PASSWORD}")
    assert status == 200, text
    expected = native_prediction(rendered, body["data"], tmp_path)
    assert json.loads(text)["predictions"] == pytest.approx(expected, rel=0, abs=1e-9)


def test_traefik_presents_the_certificate_of_the_chart_secret(
    websecure: int, release: Release
) -> None:
    host = release.host
    shown = run("openssl", "s_client", "-connect", f"127.0.0.1:{websecure}",
                "-servername", host, "-CAfile", str(release.ca_crt), "-verify_return_error",
                stdin="", timeout=30)  # fmt: skip
    assert f"subject=CN = {host}" in shown.stdout or f"subject=CN={host}" in shown.stdout
    assert "Verify return code: 0 (ok)" in shown.stdout


def test_traefik_listens_on_loopback_only(traefik: str) -> None:
    listening = listening_pids("traefik")
    assert listening, "no traefik process is listening"
    addresses = set().union(*listening.values())
    assert addresses == {"127.0.0.1:63080", "127.0.0.1:63443", "127.0.0.1:63900"}
