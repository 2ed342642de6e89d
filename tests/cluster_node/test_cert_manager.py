"""A real cert-manager on the test bed: the chart installed with `tls.issuer.create=true`,
`tls.issuer.type=ca` gets its Certificate issued by the CA-only controller of
testbed/cert-manager (built from cert-manager's main module, started by `node.sh up`), and
Traefik serves exactly that certificate: the chain verifies against the CA (openssl s_client and
the HTTPS client), its SAN is the release's host, and /predict answers through it with basic auth.

The CA is a test CA made with openssl, stored as the Secret the chart's CA Issuer names; nothing
else creates the TLS Secret (the other node tests leave the Certificate out and create the
Secret by hand)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cluster.kube import eventually, helm, kubectl, kubectl_json, run

from cluster_node.boston import WEBSECURE_PORT, install, make_ca
from cluster_node.traffic import Traffic, wait_for_route

RELEASE = "boston"
CA_SECRET = "rmp-node-e2e-ca"
# On top of the node overrides, which leave the chart's Certificate out (boston.TLS_SECRET).
CA_ISSUER = {
    "tls": {
        "certificate": {"create": True},
        "issuer": {"create": True, "type": "ca", "ca": {"secretName": CA_SECRET}},
    }
}


@dataclass(frozen=True)
class Issued:
    namespace: str
    ca_crt: Path
    host: str
    secret: dict


def is_ready(item: dict) -> bool:
    conditions = item.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def ready(kind: str, namespace: str) -> bool:
    """Every object of `kind` in `namespace` has condition Ready=True."""
    items = kubectl_json("get", kind, "-n", namespace)["items"]
    return bool(items) and all(is_ready(item) for item in items)


@pytest.fixture(scope="module")
def issued(
    traefik: str, module_namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Issued]:
    """boston-rf with the chart's CA Issuer; waits for the controller to issue the Certificate
    and for Traefik to route the host."""
    workdir = tmp_path_factory.mktemp("boston-rf-cert-manager")
    ca_crt, ca_key = make_ca(workdir)
    kubectl("create", "secret", "tls", CA_SECRET, "-n", module_namespace,
            f"--cert={ca_crt}", f"--key={ca_key}")  # fmt: skip
    install(RELEASE, module_namespace, workdir, CA_ISSUER)
    issued_in_time = eventually(
        lambda: (
            ready("issuers.cert-manager.io", module_namespace)
            and ready("certificates.cert-manager.io", module_namespace)
        ),
        timeout=90,
    )
    state = kubectl("get", "issuer,certificate,certificaterequest", "-n", module_namespace)
    assert issued_in_time, f"the controller did not issue the Certificate:\n{state.stdout}"
    certificate = kubectl_json("get", "certificates.cert-manager.io", "-n", module_namespace)
    secret_name = certificate["items"][0]["spec"]["secretName"]
    secret = kubectl_json("get", "secret", secret_name, "-n", module_namespace)
    host = wait_for_route(ca_crt, module_namespace)
    yield Issued(module_namespace, ca_crt, host, secret)
    helm("uninstall", RELEASE, "-n", module_namespace, "--wait", "--timeout", "120s", check=False)


def secret_file(issued: Issued, key: str, workdir: Path) -> Path:
    path = workdir / key
    path.write_bytes(base64.b64decode(issued.secret["data"][key]))
    return path


def test_the_controller_issues_the_chart_certificate_from_the_ca(
    issued: Issued, tmp_path: Path
) -> None:
    assert issued.secret["type"] == "kubernetes.io/tls"
    tls_crt = secret_file(issued, "tls.crt", tmp_path)
    verified = run("openssl", "verify", "-CAfile", str(issued.ca_crt), str(tls_crt), check=False)
    assert verified.returncode == 0 and f"{tls_crt}: OK" in verified.stdout, verified
    assert secret_file(issued, "ca.crt", tmp_path).read_bytes() == issued.ca_crt.read_bytes()
    san = run("openssl", "x509", "-in", str(tls_crt), "-noout", "-ext", "subjectAltName").stdout
    assert f"DNS:{issued.host}" in san, san
    key_type = run("openssl", "x509", "-in", str(tls_crt), "-noout", "-text").stdout
    assert "id-ecPublicKey" in key_type  # the chart's privateKey.algorithm: ECDSA


def served_certificate(host: str, ca_crt: Path) -> tuple[str, str]:
    """(s_client's output, the PEM of the certificate Traefik presents for `host`)."""
    shown = run("openssl", "s_client", "-connect", f"127.0.0.1:{WEBSECURE_PORT}",
                "-servername", host, "-CAfile", str(ca_crt), "-verify_return_error",
                stdin="", timeout=30)  # fmt: skip
    begin = shown.stdout.index("-----BEGIN CERTIFICATE-----")
    end = shown.stdout.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
    return shown.stdout, shown.stdout[begin:end] + "\n"


def fingerprint(pem: str) -> str:
    return run("openssl", "x509", "-noout", "-fingerprint", "-sha256", stdin=pem).stdout.strip()


def test_traefik_serves_the_issued_certificate(issued: Issued, tmp_path: Path) -> None:
    shown, pem = served_certificate(issued.host, issued.ca_crt)
    assert "Verify return code: 0 (ok)" in shown, shown
    issued_pem = base64.b64decode(issued.secret["data"]["tls.crt"]).decode()
    assert fingerprint(pem) == fingerprint(issued_pem)
    san = run("openssl", "x509", "-noout", "-ext", "subjectAltName", stdin=pem).stdout
    assert f"DNS:{issued.host}" in san, san

    with Traffic(issued.ca_crt, issued.host, max_requests=5, max_seconds=60) as calls:
        calls.join()
    assert len(calls.answers) == 5
    assert not calls.failures(), calls.failures()
