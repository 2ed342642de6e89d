"""rmodelpack/runtime/fetch-model.sh (the url-source init container's script, shipped in the image
at /opt/rmodelpack/runtime/) run directly with bash and curl against local HTTP and HTTPS servers
on 127.0.0.1: https only unless --allow-http, sha256 check, atomic install, clear errors, and the
URL (a SAS token) never printed."""

from __future__ import annotations

import os
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chart.blob_server import GOOD_SHA, MODEL_BYTES, serve
from chart.helm_template import CHART_DIR

SCRIPT = CHART_DIR.parent / "rmodelpack" / "runtime" / "fetch-model.sh"
SECRET = "sig=SECRET-SAS-TOKEN"


@pytest.fixture(scope="module")
def tools(require_tool) -> None:
    for tool in ("bash", "curl", "sha256sum"):
        require_tool(tool)


def script_env(url: str, model_dir: Path, sha256: str = GOOD_SHA, **extra: str) -> dict[str, str]:
    env = {"MODEL_URL": url, "MODEL_SHA256": sha256, "MODEL_DIR": str(model_dir)}
    return {**env, "PATH": os.environ["PATH"], **extra}


def fetch(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60
    )


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_installs_a_verified_model_readable_by_the_server(tools, model_server, tmp_path):
    result = fetch(script_env(f"{model_server}/model.rds?{SECRET}", tmp_path), "--allow-http")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "model.rds").read_bytes() == MODEL_BYTES
    assert names(tmp_path) == ["model.rds"]
    assert stat.S_IMODE((tmp_path / "model.rds").stat().st_mode) == 0o644
    assert f"model.rds verified (sha256 {GOOD_SHA})" in result.stdout
    assert SECRET not in result.stdout + result.stderr


def test_https_is_the_default(tools, https_server, self_signed_cert, tmp_path):
    env = script_env(f"{https_server}/model.rds", tmp_path, CURL_CA_BUNDLE=str(self_signed_cert[0]))
    result = fetch(env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "model.rds").read_bytes() == MODEL_BYTES


@pytest.mark.parametrize("path", ["/model.rds", "/redirect.rds"])
def test_plain_http_is_refused_without_allow_http(
    tools, model_server, https_server, self_signed_cert, tmp_path, path
):
    base = model_server if path == "/model.rds" else https_server
    env = script_env(f"{base}{path}?{SECRET}", tmp_path, CURL_CA_BUNDLE=str(self_signed_cert[0]))
    result = fetch(env)
    assert result.returncode == 1
    assert "not https" in result.stderr and "model.url.allowHttp=true" in result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert names(tmp_path) == []


def test_a_checksum_mismatch_keeps_the_previous_model(tools, model_server, tmp_path):
    (tmp_path / "model.rds").write_bytes(b"the previous model")
    wrong = "0" * 64
    result = fetch(script_env(f"{model_server}/model.rds", tmp_path, wrong), "--allow-http")
    assert result.returncode == 1
    assert f"sha256 of the downloaded model is {GOOD_SHA}, expected {wrong}" in result.stderr
    assert "model.sha256" in result.stderr
    assert names(tmp_path) == ["model.rds"]
    assert (tmp_path / "model.rds").read_bytes() == b"the previous model"


def test_a_download_error_exits_with_curls_code_and_leaves_nothing(tools, model_server, tmp_path):
    result = fetch(script_env(f"{model_server}/missing.rds?{SECRET}", tmp_path), "--allow-http")
    assert result.returncode == 22  # CURLE_HTTP_RETURNED_ERROR
    assert "404" in result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert names(tmp_path) == []


def test_an_untrusted_certificate_is_refused(tools, https_server, tmp_path):
    result = fetch(script_env(f"{https_server}/model.rds", tmp_path))
    assert result.returncode == 60  # CURLE_PEER_FAILED_VERIFICATION: no silent --insecure
    assert names(tmp_path) == []


@pytest.fixture
def slow_server(blob_root) -> Iterator[tuple[str, threading.Event]]:
    release = threading.Event()
    server = serve(blob_root, release=release)
    url = next(server)
    yield url, release
    release.set()
    server.close()


def test_the_model_appears_only_once_complete_and_verified(tools, slow_server, tmp_path):
    url, release = slow_server
    env = script_env(f"{url}/slow.rds", tmp_path)
    process = subprocess.Popen(
        ["bash", str(SCRIPT), "--allow-http"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while not any(p.stat().st_size for p in tmp_path.iterdir()):
            assert time.monotonic() < deadline, "the download never started"
            time.sleep(0.05)
        in_progress = names(tmp_path)
        release.set()
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert "model.rds" not in in_progress
    assert len(in_progress) == 1 and in_progress[0].startswith(".model.rds.part.")
    assert process.returncode == 0, stderr
    assert names(tmp_path) == ["model.rds"]
    assert (tmp_path / "model.rds").read_bytes() == MODEL_BYTES


@pytest.mark.parametrize(
    ("change", "args", "message"),
    [
        ({"MODEL_URL": ""}, (), "MODEL_URL is empty: put the download URL in the Secret"),
        ({"MODEL_SHA256": "ABC"}, (), "MODEL_SHA256 'ABC' is not 64 lowercase hex digits"),
        ({"MODEL_DIR": "/nonexistent/model"}, (), "MODEL_DIR '/nonexistent/model' is not a"),
        ({}, ("--insecure",), "unknown argument '--insecure'"),
    ],
)
def test_bad_usage_is_a_clear_error_before_any_download(tools, tmp_path, change, args, message):
    # Port 9 (discard) is never contacted: the script stops before curl.
    env = {**script_env(f"http://127.0.0.1:9/model.rds?{SECRET}", tmp_path), **change}
    result = fetch(env, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert names(tmp_path) == []


def test_the_script_ships_in_every_model_image():
    """render's build context copies runtime/ to /opt/rmodelpack/runtime/, where the chart's
    init container runs it."""
    from rmodelpack.render import runtime_files

    assert runtime_files()["runtime/fetch-model.sh"] == SCRIPT.read_bytes()
