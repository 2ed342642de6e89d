"""A password given through `password_env` never appears in plaintext (nor as the base64 of
`user:password`, the Basic Authorization header) in the rendered values and manifests, in any
layer or file of the built image, or in the logs of a served container that got authenticated
requests. Everything runs for real: rmodelpack render, helm template, docker build/run/export."""

from __future__ import annotations

import base64
import re
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import requests
import yaml
from conftest import EXAMPLES_DIR, REPO_ROOT, require_tool

EXAMPLE = "boston-rf"
PASSWORD = "sec-Test-Passw0rd-7f3a91"  # a distinctive needle: found only if leaked
RUNTIME_DIR = REPO_ROOT / "rmodelpack" / "runtime"


def auth_user(example: str) -> tuple[str, str]:
    """(user name, password_env) of the example's first `service.auth.users` entry."""
    manifest = yaml.safe_load((EXAMPLES_DIR / example / "rmodel.yaml").read_text())
    user = manifest["service"]["auth"]["users"][0]
    return user["name"], user["password_env"]


USER, PASSWORD_ENV = auth_user(EXAMPLE)
BASIC_CREDENTIALS = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
NEEDLES = [
    PASSWORD.encode(),
    base64.b64encode(PASSWORD.encode()),
    BASIC_CREDENTIALS.encode(),
]


def leaks(data: bytes) -> list[bytes]:
    return [needle for needle in NEEDLES if needle in data]


def stream_leaks(chunks: Iterable[bytes]) -> set[bytes]:
    """Needles found in a byte stream, also across chunk borders."""
    overlap = max(len(n) for n in NEEDLES) - 1
    found: set[bytes] = set()
    tail = b""
    for chunk in chunks:
        window = tail + chunk
        found.update(leaks(window))
        tail = window[-overlap:]
    return found


@pytest.fixture(scope="module")
def password_env(tmp_path_factory) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(PASSWORD_ENV, PASSWORD)
        yield tmp_path_factory.mktemp("render")


@pytest.fixture(scope="module")
def rendered(password_env: Path):
    from rmodelpack import render

    return render(EXAMPLES_DIR / EXAMPLE / "rmodel.yaml", password_env / "out")


def test_control_the_needles_are_found():
    assert leaks(b"x" + BASIC_CREDENTIALS.encode() + b"y") == [BASIC_CREDENTIALS.encode()]
    assert stream_leaks([b"..." + PASSWORD.encode()[:5], PASSWORD.encode()[5:] + b"."]) == {
        PASSWORD.encode()
    }


def test_rendered_files_hold_no_password(rendered):
    files = [path for path in rendered.out_dir.rglob("*") if path.is_file()]
    assert any(path.name == "values.yaml" for path in files)
    for path in files:
        assert leaks(path.read_bytes()) == [], path


@pytest.mark.helm
def test_rendered_manifests_hold_no_password(rendered):
    from chart.helm_template import render_text

    values = next(rendered.out_dir.rglob("values.yaml"))
    text = render_text(values_files=[values], helm=require_tool("helm"))
    assert "kind: Secret" in text  # the auth Secret (bcrypt hashes) is really rendered
    assert leaks(text.encode()) == []


def test_nginx_log_formats_never_include_the_authorization_header():
    sources = [RUNTIME_DIR / "nginx.conf.in", RUNTIME_DIR / "nginx.R"]
    formats = [
        line for path in sources for line in path.read_text().splitlines() if "log_format" in line
    ]
    assert formats, "no log_format found: the check would prove nothing"
    for path in sources:
        text = path.read_text().lower()
        assert "$http_authorization" not in text, path
        assert not re.search(r"\$http_[a-z_]*auth", text), path


@pytest.fixture(scope="module")
def built_image(docker_client, rendered) -> Iterator[str]:
    from image.containers import TEST_REPOSITORY, remove_image

    from rmodelpack.build import build_base_image, build_image

    build_base_image("debian", client=docker_client)
    tag = f"{TEST_REPOSITORY}/{EXAMPLE}-secrets:{rendered.image.rsplit(':', 1)[1]}"
    build_image(rendered.out_dir, tag, client=docker_client)
    yield tag
    remove_image(docker_client, tag)


@pytest.mark.docker
@pytest.mark.slow
def test_image_history_holds_no_password(built_image):
    history = subprocess.run(
        [require_tool("docker"), "history", "--no-trunc", built_image],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert b"RUN" in history or b"COPY" in history
    assert leaks(history) == []


@pytest.mark.docker
@pytest.mark.slow
def test_image_filesystem_holds_no_password(docker_client, built_image):
    container = docker_client.containers.create(built_image)
    try:
        found = stream_leaks(container.export(chunk_size=1 << 20))
    finally:
        container.remove(force=True)
    assert found == set()


@pytest.mark.docker
@pytest.mark.slow
def test_served_container_never_logs_the_password(docker_client, built_image):
    from image.containers import hardened_container, wait_ready

    body = (EXAMPLES_DIR / EXAMPLE / "requests" / "predict.json").read_bytes()
    headers = {"Authorization": f"Basic {BASIC_CREDENTIALS}", "Content-Type": "application/json"}
    with hardened_container(docker_client, built_image) as running:
        wait_ready(running)
        for path in ("/predict", "/readyz", "/no-such-path"):
            requests.post(f"{running.url}{path}", data=body, headers=headers, timeout=30)
        answer = requests.post(f"{running.url}/predict", data=body, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        running.container.stop(timeout=30)  # flushes nginx's buffered access log
        logs = running.container.logs(stdout=True, stderr=True)
    assert b'"path":"/predict"' in logs  # the access log really has the requests
    assert leaks(logs) == []
