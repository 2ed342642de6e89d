"""The url-source initContainer as the chart renders it, run for real: its command (the image's
fetch-model.sh, here the same file from rmodelpack/runtime/), args and env, with bash and curl
against local HTTP and HTTPS servers on 127.0.0.1. It installs a verified model, refuses a
tampered one, and refuses plain http (also via a redirect) unless `model.url.allowHttp` is set.
The script's own edge cases are in test_fetch_model_script.py."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from chart.blob_server import GOOD_SHA, MODEL_BYTES
from chart.helm_template import CHART_DIR, one, render_chart
from rmodelpack.contract import RUNTIME_DIR
from rmodelpack.version import __version__

LOCAL_RUNTIME_DIR = CHART_DIR.parent / "rmodelpack" / "runtime"

pytestmark = pytest.mark.helm


def fetch_container(helm: str, sha256: str, allow_http: bool = False) -> dict:
    url = {"existingSecret": "blob-url", "allowHttp": allow_http}
    values = {"model": {"source": "url", "sha256": sha256, "url": url}}
    docs = render_chart(values, show_only=["templates/deployment.yaml"], helm=helm)
    return one(docs, "Deployment")["spec"]["template"]["spec"]["initContainers"][0]


def local_path(argument: str) -> str:
    """An image path below the runtime folder, as the same file in this checkout."""
    if argument.startswith(f"{RUNTIME_DIR}/"):
        return str(LOCAL_RUNTIME_DIR / argument.removeprefix(f"{RUNTIME_DIR}/"))
    return argument


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
    argv = [local_path(a) for a in [*container["command"], *container.get("args", [])]]
    env = {e["name"]: e.get("value") for e in container["env"]}
    env.update(MODEL_URL=url, MODEL_DIR=str(model_dir), PATH=os.environ["PATH"])
    if ca_bundle is not None:
        env["CURL_CA_BUNDLE"] = str(ca_bundle)  # curl's own variable: trust the test CA
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


def test_the_init_container_runs_the_script_shipped_in_the_image(helm):
    container = fetch_container(helm, GOOD_SHA)
    assert container["command"][:2] == ["/bin/bash", "-c"]
    assert container["command"][3:] == ["fetch-model", f"{RUNTIME_DIR}/fetch-model.sh"]
    assert "args" not in container
    assert Path(local_path(container["command"][-1])).is_file()
    assert fetch_container(helm, GOOD_SHA, allow_http=True)["args"] == ["--allow-http"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MODEL_URL"]["valueFrom"] == {"secretKeyRef": {"name": "blob-url", "key": "url"}}
    assert env["MODEL_SHA256"]["value"] == GOOD_SHA
    assert env["MODEL_DIR"]["value"] == "/var/lib/rmodelpack/model"


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
    assert list(tmp_path.iterdir()) == []


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
    assert list(tmp_path.iterdir()) == []


def test_an_image_without_the_script_names_the_rmodelpack_version_it_needs(
    require_tool, helm, tmp_path
):
    """Images built before fetch-model.sh existed fail the init container with the fix, not a bare
    'No such file'."""
    require_tool("bash")
    container = fetch_container(helm, GOOD_SHA)
    argv = [*container["command"][:-1], str(tmp_path / "absent" / "fetch-model.sh")]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 127
    assert f"model image built by rmodelpack {__version__} or later" in result.stderr
    assert "model.source=image" in result.stderr


def test_the_readme_names_the_rmodelpack_version_the_url_source_needs():
    """appVersion tracks rmodelpack (the init container's message quotes it); the README says
    which images carry fetch-model.sh."""
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__
    readme = " ".join((CHART_DIR / "README.md").read_text().split())
    assert f"needs an image built by rmodelpack {__version__} (this chart's `appVersion`)" in readme
