"""The url-source initContainer script, run for real with bash and curl against a local HTTP
server on 127.0.0.1: it installs a verified model and refuses a tampered one."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import subprocess
import threading
from pathlib import Path

import pytest

from chart.helm_template import one, render_chart

MODEL_BYTES = b"RDX3\n" + bytes(range(256)) * 64
GOOD_SHA = hashlib.sha256(MODEL_BYTES).hexdigest()

pytestmark = pytest.mark.helm


@pytest.fixture(scope="module")
def model_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("blob")
    (root / "model.rds").write_bytes(MODEL_BYTES)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def fetch_container(helm: str, sha256: str) -> dict:
    values = {
        "model": {"source": "url", "sha256": sha256, "url": {"existingSecret": "blob-url"}},
    }
    docs = render_chart(values, show_only=["templates/deployment.yaml"], helm=helm)
    return one(docs, "Deployment")["spec"]["template"]["spec"]["initContainers"][0]


def run_fetch(require_tool, helm, sha256: str, url: str, model_dir: Path):
    require_tool("bash"), require_tool("curl"), require_tool("sha256sum")
    container = fetch_container(helm, sha256)
    env = {e["name"]: e.get("value") for e in container["env"]}
    env.update(MODEL_URL=url, MODEL_DIR=str(model_dir), PATH=os.environ["PATH"])
    return subprocess.run(
        ["bash", *container["command"][1:]], env=env, capture_output=True, text=True, timeout=60
    )


def test_verified_model_is_installed(require_tool, helm, model_server, tmp_path):
    result = run_fetch(require_tool, helm, GOOD_SHA, f"{model_server}/model.rds", tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "model.rds").read_bytes() == MODEL_BYTES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.rds"]


def test_checksum_mismatch_fails_and_leaves_no_model(require_tool, helm, model_server, tmp_path):
    wrong = "0" * 64
    result = run_fetch(require_tool, helm, wrong, f"{model_server}/model.rds", tmp_path)
    assert result.returncode == 1
    assert f"is {GOOD_SHA}, expected {wrong}" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_download_error_fails_without_printing_the_url(require_tool, helm, model_server, tmp_path):
    url = f"{model_server}/missing.rds?sig=SECRET-SAS-TOKEN"
    result = run_fetch(require_tool, helm, GOOD_SHA, url, tmp_path)
    assert result.returncode != 0
    assert "404" in result.stderr
    assert "SECRET-SAS-TOKEN" not in result.stdout + result.stderr
    assert not (tmp_path / "model.rds").exists()
