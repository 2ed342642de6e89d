"""Smoke tests: the toolchain ci/setup.sh installs is real and answers."""

from __future__ import annotations

import subprocess
import uuid

import pytest
from conftest import BIN_DIR, require_tool


def run(*command: str) -> str:
    completed = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)
    return completed.stdout + completed.stderr


@pytest.mark.parametrize(
    ("tool", "args", "expected"),
    [
        ("helm", ("version", "--template", "{{.Version}}"), "v4.3.1"),
        ("helm3", ("version", "--template", "{{.Version}}"), "v3.22.0"),
        ("ct", ("version",), "v3.14.0"),
        ("kubeconform", ("-v",), "v0.7.0"),
    ],
)
def test_pinned_tools_run_from_the_project_bin_dir(tool, args, expected):
    path = require_tool(tool)
    assert path == str(BIN_DIR / tool), f"{tool} must come from .bin/, not {path}"
    assert expected in run(path, *args)


def test_r_loads_plumber():
    rscript = require_tool("Rscript")
    output = run(rscript, "-e", "library(plumber); cat(as.character(packageVersion('plumber')))")
    assert output.strip().split(".")[0] >= "1"


@pytest.mark.docker
def test_offline_base_image_runs(docker_client):
    output = docker_client.containers.run(
        "debian:bookworm-slim", ["cat", "/etc/os-release"], remove=True
    ).decode()
    assert "VERSION_CODENAME=bookworm" in output


@pytest.mark.docker
@pytest.mark.registry
def test_local_registry_round_trips_an_image(docker_client, registry):
    image = docker_client.images.get("debian:bookworm-slim")
    repository = f"{registry}/smoke/debian"
    tag = uuid.uuid4().hex[:12]
    assert image.tag(repository, tag)
    try:
        for line in docker_client.images.push(repository, tag, stream=True, decode=True):
            assert "error" not in line, line
        docker_client.images.remove(f"{repository}:{tag}")
        pulled = docker_client.images.pull(repository, tag=tag)
        assert pulled.id == image.id
    finally:
        docker_client.images.remove(f"{repository}:{tag}", force=True)
