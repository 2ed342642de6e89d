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


def test_whitespace_around_the_url_is_ignored(tools, model_server, tmp_path):
    """`echo $url > f; kubectl create secret --from-file` leaves a newline in the Secret."""
    url = f"  {model_server}/model.rds?{SECRET}\r\n"
    result = fetch(script_env(url, tmp_path), "--allow-http")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "model.rds").read_bytes() == MODEL_BYTES


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:9/model.rds?a=1 b=2", "MODEL_URL has whitespace inside it"),
        # Read as curl's -K (config file) were it not refused: the URL is never an option.
        ("-K/dev/null", "MODEL_URL does not start with a scheme"),
        ("127.0.0.1:9/model.rds", "MODEL_URL does not start with a scheme"),
    ],
)
def test_a_malformed_url_names_the_secret_to_fix(tools, tmp_path, url, message):
    result = fetch(script_env(url, tmp_path), "--allow-http")
    assert result.returncode == 2
    assert message in result.stderr and "model.url.existingSecret" in result.stderr
    assert url not in result.stderr
    assert names(tmp_path) == []


def test_a_curlrc_cannot_weaken_the_download(tools, https_server, tmp_path):
    """-q: a .curlrc in $HOME (here one that turns certificate checks off) is never read."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".curlrc").write_text("insecure\n")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    result = fetch(script_env(f"{https_server}/model.rds", model_dir, HOME=str(home)))
    assert result.returncode == 60, result.stderr
    assert names(model_dir) == []


def test_leftovers_of_a_killed_attempt_are_removed(tools, model_server, tmp_path):
    """A SIGKILLed attempt cannot clean up; its parts would count against the emptyDir limit."""
    (tmp_path / ".model.rds.part.AbC123").write_bytes(b"x" * 1024)
    result = fetch(script_env(f"{model_server}/model.rds", tmp_path), "--allow-http")
    assert result.returncode == 0, result.stderr
    assert names(tmp_path) == ["model.rds"]


def test_a_backslash_in_the_folder_name_does_not_break_the_checksum(tools, model_server, tmp_path):
    model_dir = tmp_path / "back\\slash"
    model_dir.mkdir()
    result = fetch(script_env(f"{model_server}/model.rds", model_dir), "--allow-http")
    assert result.returncode == 0, result.stderr
    assert names(model_dir) == ["model.rds"]


def test_a_non_http_url_is_not_blamed_on_allow_http(tools, tmp_path):
    # curl refuses the protocol before it connects: nothing listens on port 9.
    result = fetch(script_env("ftp://127.0.0.1:9/model.rds", tmp_path), "--allow-http")
    assert result.returncode == 1
    assert "neither http nor https" in result.stderr
    assert "allowHttp=true" not in result.stderr
    assert names(tmp_path) == []


def test_a_stalled_download_gives_up_instead_of_hanging(tools, slow_server, tmp_path):
    """The server sends 16 bytes and then nothing for 20 s: with a 1 s stall limit each attempt
    (1 + 3 retries) ends with curl's timeout (28) instead of waiting."""
    url, _ = slow_server
    env = script_env(f"{url}/stall.rds", tmp_path, MODEL_STALL_SECONDS="1")
    result = fetch(env, "--allow-http")
    assert result.returncode == 28, result.stderr
    assert names(tmp_path) == []


def test_the_stall_limit_defaults_to_a_minute():
    assert 'stall_seconds="${MODEL_STALL_SECONDS:-60}"' in SCRIPT.read_text()
