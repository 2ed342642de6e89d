"""The boston-rf example on the real node: rendered values, the image, the overrides the node
needs, R's own predictions, `kubectl port-forward` on 127.0.0.1, and a client that reaches the
chart's Ingress through Traefik on 127.0.0.1 (TLS with the chart's host name, basic auth)."""

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
HOST = "boston.example.com"  # examples/boston-rf/rmodel.yaml service.host
WEBSECURE_PORT = 17443  # testbed/node.sh TRAEFIK_WEBSECURE_PORT
USER = "scorer"
PASSWORD = "node-e2e-password"
PASSWORD_ENV = {"BOSTON_SCORER_PASSWORD": PASSWORD}
# Only what the real node needs: its taint tolerated, one small replica, the loaded image.
NODE_OVERRIDES = {
    "replicaCount": 1,
    "autoscaling": {"enabled": False},
    "image": {"pullPolicy": "Never"},
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


def upgrade(
    release: str, namespace: str, rendered: Path, workdir: Path, extra: dict | None = None
) -> None:
    """helm upgrade --install --wait with the rendered values, the node's overrides and `extra`."""
    overrides = workdir / "node-values.yaml"
    overrides.write_text(yaml.safe_dump(NODE_OVERRIDES))
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


def issue_tls(workdir: Path) -> tuple[Path, Path, Path]:
    """A test CA and a certificate for HOST signed by it: (ca.crt, tls.crt, tls.key)."""
    require_tool("openssl")
    ca_key, ca_crt = workdir / "ca.key", workdir / "ca.crt"
    key, csr, crt = workdir / "tls.key", workdir / "tls.csr", workdir / "tls.crt"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("openssl", "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca_crt),
        "-subj", "/CN=rmodelpack-node-e2e-ca", "-days", "1",
        "-addext", "basicConstraints=critical,CA:TRUE")  # fmt: skip
    run(
        "openssl", "req", "-new", *ec, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={HOST}"
    )
    extensions = workdir / "tls.ext"
    extensions.write_text(f"subjectAltName=DNS:{HOST}\nextendedKeyUsage=serverAuth\n")
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "1", "-extfile", str(extensions), "-out", str(crt))  # fmt: skip
    return ca_crt, crt, key


def create_tls_secret(namespace: str, workdir: Path) -> Path:
    """The Secret the chart's Certificate names, issued by a test CA as a CA Issuer would
    (cert-manager's controller cannot be built here); returns the CA certificate."""
    certificate = kubectl_json("get", "certificates.cert-manager.io", "-n", namespace)
    secret_name = certificate["items"][0]["spec"]["secretName"]
    ca_crt, crt, key = issue_tls(workdir)
    kubectl("create", "secret", "tls", secret_name, "-n", namespace,
            f"--cert={crt}", f"--key={key}")  # fmt: skip
    return ca_crt


class _ChartHostAdapter(HTTPAdapter):
    """Connects to 127.0.0.1 while sending and verifying HOST as the TLS server name (SNI),
    like `curl --resolve HOST:PORT:127.0.0.1`."""

    def init_poolmanager(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        kwargs["server_hostname"] = HOST
        super().init_poolmanager(*args, **kwargs)


def ingress_session(ca_crt: Path, auth: bool = True) -> requests.Session:
    """A client for https://HOST through Traefik on 127.0.0.1:WEBSECURE_PORT; use ingress_url."""
    session = requests.Session()
    # Not the environment's REQUESTS_CA_BUNDLE (it would override `verify`) nor its proxies:
    # only our CA, only 127.0.0.1.
    session.trust_env = False
    session.mount(f"https://127.0.0.1:{WEBSECURE_PORT}", _ChartHostAdapter())
    session.verify = str(ca_crt)
    session.headers["Host"] = HOST
    if auth:
        session.auth = (USER, PASSWORD)
    return session


def ingress_url(path: str) -> str:
    return f"https://127.0.0.1:{WEBSECURE_PORT}{path}"
