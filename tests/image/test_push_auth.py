"""Pushing to a registry that wants credentials: a clear error first, then `docker login` works.

A second real registry (Debian's docker-registry) with htpasswd auth runs on a free 127.0.0.1
port, standing in for an Azure Container Registry before and after `az acr login`.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
from conftest import REPO_ROOT, free_port, require_tool

from rmodelpack.build import push_image
from rmodelpack.exceptions import PushError

USER, PASSWORD = "ci", "registry-test-password"


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[str]:
    binary = require_tool("docker-registry")
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt()).decode()}\n")
    address = f"127.0.0.1:{free_port()}"
    env = {
        "REGISTRY_HTTP_ADDR": address,
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(tmp_path / "data"),
        "REGISTRY_AUTH": "htpasswd",
        "REGISTRY_AUTH_HTPASSWD_REALM": "rmodelpack-test",
        "REGISTRY_AUTH_HTPASSWD_PATH": str(htpasswd),
    }
    log = (tmp_path / "registry.log").open("wb")
    process = subprocess.Popen(
        [binary, "serve", str(REPO_ROOT / "ci" / "registry.yml")], env=env, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://{address}/v2/", timeout=2)
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "registry.log").read_text()
            time.sleep(0.2)
        yield address
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.docker
def test_push_without_login_says_how_to_log_in_then_login_works(
    docker_client, auth_registry: str, tmp_path: Path, monkeypatch
):
    import docker

    docker_cli = require_tool("docker")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    reference = f"{auth_registry}/models/base:auth-test"
    docker_client.images.get("debian:trixie-slim").tag(reference)
    try:
        with pytest.raises(PushError) as refused:
            push_image(reference, client=docker.from_env())
        message = str(refused.value)
        assert auth_registry in message
        assert "az acr login" in message and f"docker login {auth_registry}" in message

        subprocess.run(
            [docker_cli, "login", auth_registry, "-u", USER, "--password-stdin"],
            input=PASSWORD,
            text=True,
            check=True,
            capture_output=True,
        )
        pushed = push_image(reference, client=docker.from_env())
        assert pushed.startswith(f"{auth_registry}/models/base@sha256:")
    finally:
        docker_client.images.remove(reference, force=True)
