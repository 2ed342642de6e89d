"""Smoke tests: the toolchain ci/setup.sh installs is real and answers, and the README's two
commands are the scripts that set up and run what they say."""

from __future__ import annotations

import re
import subprocess
import uuid

import pytest
from conftest import BIN_DIR, REPO_ROOT, require_tool

SETUP = REPO_ROOT / "ci" / "setup.sh"
# The offline base image's one home is ci/setup.sh.
BASE_IMAGE = re.search(r"^BASE_IMAGE=(\S+)$", SETUP.read_text(), re.MULTILINE).group(1)


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
    output = docker_client.containers.run(BASE_IMAGE, ["cat", "/etc/os-release"], remove=True)
    release = BASE_IMAGE.removeprefix("debian:").removesuffix("-slim")
    assert f"VERSION_CODENAME={release}" in output.decode()


@pytest.mark.docker
@pytest.mark.registry
def test_local_registry_round_trips_an_image(docker_client, registry):
    image = docker_client.images.get(BASE_IMAGE)
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


def test_setup_rejects_an_unknown_part_and_lists_the_valid_ones():
    completed = subprocess.run(
        ["bash", str(SETUP), "everything"], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 2
    assert "unknown part 'everything'" in completed.stderr
    assert "valid parts: demo helm tools cluster all" in completed.stderr


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one():
    readme = (REPO_ROOT / "README.md").read_text()
    assert "bash ci/demo.sh" in readme
    assert "bash ci/test.sh" in readme
    ci_commands = [
        line.strip()
        for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert ci_commands == ["bash ci/test.sh"]


def test_the_demo_sets_up_only_its_own_part_and_the_tests_everything():
    demo = (REPO_ROOT / "ci" / "demo.sh").read_text()
    test = (REPO_ROOT / "ci" / "test.sh").read_text()
    assert re.findall(r"ci/setup\.sh\S*\s+(\w+)", demo)[:1] == ["demo"]
    assert 'ci/setup.sh" all' in test
