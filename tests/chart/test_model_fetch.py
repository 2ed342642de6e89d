"""The url-source initContainer script, run for real with bash and curl against local HTTP and
HTTPS servers on 127.0.0.1: it installs a verified model, refuses a tampered one, and refuses
plain http (also via a redirect) unless `model.url.allowHttp` is set."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from chart.helm_template import one, render_chart

MODEL_BYTES = b"RDX3\n" + bytes(range(256)) * 64
GOOD_SHA = hashlib.sha256(MODEL_BYTES).hexdigest()

pytestmark = pytest.mark.helm


class BlobHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the blob directory; /redirect.rds answers 302 to `redirect_target`."""

    redirect_target = ""

    def do_GET(self) -> None:
        if self.path == "/redirect.rds":
            self.send_response(302)
            self.send_header("Location", self.redirect_target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format: str, *args) -> None:
        pass


def serve(root: Path, tls: ssl.SSLContext | None = None, redirect_target: str = ""):
    handler_class = type("Handler", (BlobHandler,), {"redirect_target": redirect_target})
    handler = functools.partial(handler_class, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def blob_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("blob")
    (root / "model.rds").write_bytes(MODEL_BYTES)
    return root


@pytest.fixture(scope="module")
def model_server(blob_root):
    server = serve(blob_root)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def self_signed_cert(require_tool, tmp_path_factory) -> tuple[Path, Path]:
    openssl = require_tool("openssl")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture(scope="module")
def https_server(blob_root, self_signed_cert, model_server):
    """HTTPS blob server; its /redirect.rds redirects to the plain-http server's model."""
    cert, key = self_signed_cert
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server = serve(blob_root, tls, redirect_target=f"{model_server}/model.rds")
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def fetch_container(helm: str, sha256: str, allow_http: bool = False) -> dict:
    url = {"existingSecret": "blob-url", "allowHttp": allow_http}
    values = {"model": {"source": "url", "sha256": sha256, "url": url}}
    docs = render_chart(values, show_only=["templates/deployment.yaml"], helm=helm)
    return one(docs, "Deployment")["spec"]["template"]["spec"]["initContainers"][0]


def run_fetch(
    require_tool,
    helm,
    sha256: str,
    url: str,
    model_dir: Path,
    *,
    allow_http: bool = False,
    ca_bundle: Path | None = None,
):
    require_tool("bash"), require_tool("curl"), require_tool("sha256sum")
    container = fetch_container(helm, sha256, allow_http)
    env = {e["name"]: e.get("value") for e in container["env"]}
    env.update(MODEL_URL=url, MODEL_DIR=str(model_dir), PATH=os.environ["PATH"])
    if ca_bundle is not None:
        env["CURL_CA_BUNDLE"] = str(ca_bundle)  # curl's own variable: trust the test CA
    return subprocess.run(
        ["bash", *container["command"][1:]], env=env, capture_output=True, text=True, timeout=60
    )


def test_verified_model_is_installed(require_tool, helm, model_server, tmp_path):
    result = run_fetch(
        require_tool, helm, GOOD_SHA, f"{model_server}/model.rds", tmp_path, allow_http=True
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "model.rds").read_bytes() == MODEL_BYTES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.rds"]


def test_checksum_mismatch_fails_and_leaves_no_model(require_tool, helm, model_server, tmp_path):
    wrong = "0" * 64
    result = run_fetch(
        require_tool, helm, wrong, f"{model_server}/model.rds", tmp_path, allow_http=True
    )
    assert result.returncode == 1
    assert f"is {GOOD_SHA}, expected {wrong}" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_download_error_fails_without_printing_the_url(require_tool, helm, model_server, tmp_path):
    url = f"{model_server}/missing.rds?sig=SECRET-SAS-TOKEN"
    result = run_fetch(require_tool, helm, GOOD_SHA, url, tmp_path, allow_http=True)
    assert result.returncode != 0
    assert "404" in result.stderr
    assert "SECRET-SAS-TOKEN" not in result.stdout + result.stderr
    assert not (tmp_path / "model.rds").exists()


def test_plain_http_is_refused_by_default(require_tool, helm, model_server, tmp_path):
    url = f"{model_server}/model.rds?sig=SECRET-SAS-TOKEN"
    result = run_fetch(require_tool, helm, GOOD_SHA, url, tmp_path)
    assert result.returncode == 1
    assert "model.url.allowHttp" in result.stderr
    assert "SECRET-SAS-TOKEN" not in result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == []


def test_https_download_is_verified_and_installed(
    require_tool, helm, https_server, self_signed_cert, tmp_path
):
    cert, _ = self_signed_cert
    url = f"{https_server}/model.rds"
    result = run_fetch(require_tool, helm, GOOD_SHA, url, tmp_path, ca_bundle=cert)
    assert result.returncode == 0, result.stderr
    assert f"verified (sha256 {GOOD_SHA})" in result.stdout
    assert (tmp_path / "model.rds").read_bytes() == MODEL_BYTES


def test_https_redirect_to_http_is_refused(
    require_tool, helm, https_server, self_signed_cert, tmp_path
):
    cert, _ = self_signed_cert
    url = f"{https_server}/redirect.rds"
    result = run_fetch(require_tool, helm, GOOD_SHA, url, tmp_path, ca_bundle=cert)
    assert result.returncode == 1
    assert "model.url.allowHttp" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_https_redirect_to_http_is_followed_when_allowed(
    require_tool, helm, https_server, self_signed_cert, tmp_path
):
    cert, _ = self_signed_cert
    url = f"{https_server}/redirect.rds"
    result = run_fetch(require_tool, helm, GOOD_SHA, url, tmp_path, allow_http=True, ca_bundle=cert)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "model.rds").read_bytes() == MODEL_BYTES


def test_self_signed_https_is_not_trusted_without_the_ca(
    require_tool, helm, https_server, tmp_path
):
    result = run_fetch(require_tool, helm, GOOD_SHA, f"{https_server}/model.rds", tmp_path)
    assert result.returncode == 60  # CURLE_PEER_FAILED_VERIFICATION: no silent --insecure
    assert not (tmp_path / "model.rds").exists()
