"""The boston-rf example on the real node: rendered values, the image, the overrides the node
needs, R's own predictions, `kubectl port-forward` on 127.0.0.1, and a client that reaches the
chart's Ingress through Traefik on 127.0.0.1 (TLS with the release's host name, basic auth).

Every release gets a host name of its own (`ingress_host`), never the example's
boston.example.com: Traefik watches every namespace of the cluster, and a second Ingress with the
same host and path (another test's release, or tests/cluster's kwok scenarios, which install
boston-rf with random passwords) makes a second router with the same rule and priority. Traefik
then sends our requests through the other release's basic-auth Middleware: 401 with the right
password (docs/cluster.md, "One host per release")."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
import yaml
from cluster.kube import helm, kubectl, kubectl_json, run
from conftest import CHART_DIR, EXAMPLES_DIR, REPO_ROOT, free_port, require_tool, run_cli
from requests.adapters import HTTPAdapter

EXAMPLE = EXAMPLES_DIR / "boston-rf"
NATIVE_PREDICT_R = REPO_ROOT / "tests" / "image" / "native_predict.R"
NODE_SCRIPT = REPO_ROOT / "testbed" / "node.sh"
# Reserved for testing (RFC 2606): never resolved outside, curl --resolve maps it to 127.0.0.1.
HOST_DOMAIN = "rmp-node.test"
WEBSECURE_PORT = 63443  # testbed/node.sh TRAEFIK_WEBSECURE_PORT
USER = "scorer"
PASSWORD = "node-e2e-password"
PASSWORD_ENV = {"BOSTON_SCORER_PASSWORD": PASSWORD}
# The TLS Secret the tests make with openssl (create_tls_secret). The chart's Certificate is left
# out (tls.certificate.create=false): the node runs cert-manager-ca, which would mark a
# Certificate naming the default letsencrypt ClusterIssuer not Ready, and helm's --wait waits
# for it. test_cert_manager.py turns it back on with a CA Issuer the controller serves.
TLS_SECRET = "boston-node-e2e-tls"
# Only what the real node needs: its taint tolerated, one small replica, the loaded image.
NODE_OVERRIDES = {
    "replicaCount": 1,
    "autoscaling": {"enabled": False},
    "image": {"pullPolicy": "Never"},
    "tls": {"certificate": {"create": False}, "secretName": TLS_SECRET},
    "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
    "nodeSelector": {"rmodelpack.io/real-node": "true"},
    "tolerations": [
        {
            "key": "rmodelpack.io/real-node",
            "operator": "Equal",
            "value": "true",
            "effect": "NoSchedule",
        }
    ],
}


def predict_body() -> dict:
    return json.loads((EXAMPLE / "requests" / "predict.json").read_text())


def render(out: Path, example: Path = EXAMPLE) -> dict:
    done = run_cli("render", str(example), "-o", str(out), env=PASSWORD_ENV)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load((out / "values.yaml").read_text())


def ensure_image(reference: str, out: Path, example: Path = EXAMPLE) -> None:
    """The image the rendered values name: reused when docker has it, else built into `out`."""
    if run("docker", "image", "inspect", reference, check=False).returncode == 0:
        return
    done = run_cli("build", str(example), "-o", str(out), env=PASSWORD_ENV, timeout=1800)
    assert done.returncode == 0, done.stderr
    run("docker", "image", "inspect", reference)


def example_at_version(version: str, workdir: Path) -> Path:
    """A copy of boston-rf (trained model included) whose manifest says `version`: the same
    model, a new image (the tag hashes the manifest)."""
    copy = workdir / f"boston-rf-{version}"
    shutil.copytree(EXAMPLE, copy)
    manifest = copy / "rmodel.yaml"
    text = manifest.read_text()
    assert 'version: "1.0.0"' in text
    manifest.write_text(text.replace('version: "1.0.0"', f'version: "{version}"'))
    return copy


def prepare(workdir: Path, example: Path = EXAMPLE) -> Path:
    """Renders `example`, builds its image when docker lacks it and loads it into the node's
    containerd; returns the render folder."""
    rendered = workdir / "render"
    values = render(rendered, example)
    reference = f"{values['image']['repository']}:{values['image']['tag']}"
    ensure_image(reference, workdir / "build", example)
    run("bash", str(NODE_SCRIPT), "load", reference, timeout=600)
    return rendered


def ingress_host(namespace: str) -> str:
    """The host name of the release in `namespace` (one release per namespace here): unique in
    the cluster, so no other Ingress shares its Traefik router rule."""
    return f"{namespace}.{HOST_DOMAIN}"


def upgrade(
    release: str, namespace: str, rendered: Path, workdir: Path, extra: dict | None = None
) -> None:
    """helm upgrade --install --wait with the rendered values, the node's overrides (and the
    namespace's own host name) and `extra`."""
    overrides = workdir / "node-values.yaml"
    overrides.write_text(
        yaml.safe_dump({**NODE_OVERRIDES, "ingress": {"host": ingress_host(namespace)}})
    )
    files = ["-f", str(rendered / "values.yaml"), "-f", str(overrides)]
    if extra:
        (workdir / "test-values.yaml").write_text(yaml.safe_dump(extra))
        files += ["-f", str(workdir / "test-values.yaml")]
    helm(
        "upgrade", "--install", release, str(CHART_DIR), "-n", namespace, *files,
        "--wait", "--timeout", "300s",
        timeout=360,
    )  # fmt: skip


def install(release: str, namespace: str, workdir: Path, extra: dict | None = None) -> Path:
    """Renders, loads the image into the node and installs the chart (--wait); returns the
    render folder."""
    rendered = prepare(workdir)
    upgrade(release, namespace, rendered, workdir, extra)
    return rendered


@contextmanager
def port_forward(namespace: str, target: str, remote_port: int) -> Iterator[int]:
    """`kubectl port-forward` bound to 127.0.0.1 only; yields the local port."""
    port = free_port()
    forward = subprocess.Popen(
        ["kubectl", "port-forward", "-n", namespace, "--address", "127.0.0.1", target,
         f"{port}:{remote_port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert forward.stdout is not None
        first = forward.stdout.readline()
        assert first.startswith(f"Forwarding from 127.0.0.1:{port}"), first
        yield port
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def native_prediction(rendered: Path, rows: list[dict], workdir: Path) -> list[float]:
    """R's own predict() on the host, on the rendered context's model and config."""
    rows_file = workdir / "rows.json"
    rows_file.write_text(json.dumps(rows))
    done = subprocess.run(
        ["Rscript", "--vanilla", str(NATIVE_PREDICT_R), str(rendered / "app" / "rmodelpack.json"),
         str(rendered / "model" / "model.rds"), str(rows_file)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["values"]


_EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]


def make_ca(workdir: Path) -> tuple[Path, Path]:
    """A test CA (one day, EC P-256): (ca.crt, ca.key)."""
    require_tool("openssl")
    ca_key, ca_crt = workdir / "ca.key", workdir / "ca.crt"
    run("openssl", "req", "-x509", *_EC_KEY, "-keyout", str(ca_key), "-out", str(ca_crt),
        "-subj", "/CN=rmodelpack-node-e2e-ca", "-days", "1",
        "-addext", "basicConstraints=critical,CA:TRUE")  # fmt: skip
    return ca_crt, ca_key


def issue_tls(workdir: Path, host: str) -> tuple[Path, Path, Path]:
    """A test CA and a certificate for `host` signed by it: (ca.crt, tls.crt, tls.key)."""
    ca_crt, ca_key = make_ca(workdir)
    key, csr, crt = workdir / "tls.key", workdir / "tls.csr", workdir / "tls.crt"
    run("openssl", "req", "-new", *_EC_KEY, "-keyout", str(key), "-out", str(csr),
        "-subj", f"/CN={host}")  # fmt: skip
    extensions = workdir / "tls.ext"
    extensions.write_text(f"subjectAltName=DNS:{host}\nextendedKeyUsage=serverAuth\n")
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "1", "-extfile", str(extensions), "-out", str(crt))  # fmt: skip
    return ca_crt, crt, key


def create_tls_secret(namespace: str, workdir: Path) -> Path:
    """The Secret the release's Ingress names (TLS_SECRET), issued by a test CA as a CA Issuer
    would; returns the CA certificate."""
    ca_crt, crt, key = issue_tls(workdir, ingress_host(namespace))
    kubectl("create", "secret", "tls", TLS_SECRET, "-n", namespace,
            f"--cert={crt}", f"--key={key}")  # fmt: skip
    return ca_crt


class _ChartHostAdapter(HTTPAdapter):
    """Connects to 127.0.0.1 while sending and verifying `host` as the TLS server name (SNI),
    like `curl --resolve HOST:PORT:127.0.0.1`."""

    def __init__(self, host: str) -> None:
        self.host = host
        super().__init__()

    def init_poolmanager(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        kwargs["server_hostname"] = self.host
        super().init_poolmanager(*args, **kwargs)


def ingress_session(ca_crt: Path, host: str, auth: bool = True) -> requests.Session:
    """A client for https://`host` through Traefik on 127.0.0.1:WEBSECURE_PORT; use
    ingress_url."""
    session = requests.Session()
    # Not the environment's REQUESTS_CA_BUNDLE (it would override `verify`) nor its proxies:
    # only our CA, only 127.0.0.1.
    session.trust_env = False
    session.mount(f"https://127.0.0.1:{WEBSECURE_PORT}", _ChartHostAdapter(host))
    session.verify = str(ca_crt)
    session.headers["Host"] = host
    if auth:
        session.auth = (USER, PASSWORD)
    return session


def ingress_url(path: str) -> str:
    return f"https://127.0.0.1:{WEBSECURE_PORT}{path}"


def other_ingresses_for(host: str, namespace: str) -> list[str]:
    """Ingresses outside `namespace` that claim `host`: each would be a second Traefik router
    with our rule (see the module's docstring)."""
    ingresses = kubectl_json("get", "ingress", "--all-namespaces")["items"]
    return [
        f"{item['metadata']['namespace']}/{item['metadata']['name']}"
        for item in ingresses
        if item["metadata"]["namespace"] != namespace
        and any(rule.get("host") == host for rule in item["spec"].get("rules", []))
    ]
