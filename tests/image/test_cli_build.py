"""`rmodelpack build --push` as a user runs it: real docker, the real local registry."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import EXAMPLES_DIR, free_port
from conftest import run_cli as rmodelpack

EXAMPLE = EXAMPLES_DIR / "custom-score"


def copy_example(tmp_path: Path, repository: str) -> Path:
    folder = tmp_path / "example"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns(".rmodelpack"))
    manifest = yaml.safe_load((folder / "rmodel.yaml").read_text())
    manifest["image"]["repository"] = repository
    (folder / "rmodel.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return folder


@pytest.mark.docker
@pytest.mark.registry
def test_build_push_prints_a_digest_that_pulls_back(docker_client, registry, base_image, tmp_path):
    folder = copy_example(tmp_path, f"{registry}/cli-test/custom-score")
    result = rmodelpack("build", str(folder), "--push")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "build" in result.stderr, "build progress is streamed"
    match = re.search(r"pushed (\S+@sha256:[0-9a-f]{64})", result.stdout)
    assert match, result.stdout
    built = re.search(r"built (\S+) \((sha256:[0-9a-f]+);", result.stdout)
    assert built, result.stdout
    reference = match.group(1)
    docker_client.images.remove(built.group(1), force=True)
    pulled = docker_client.images.pull(reference)
    try:
        assert pulled.id == built.group(2)
    finally:
        docker_client.images.remove(pulled.id, force=True)


@pytest.mark.docker
def test_push_to_an_unreachable_registry_is_exit_1(docker_client, base_image, tmp_path):
    registry = f"127.0.0.1:{free_port()}"
    folder = copy_example(tmp_path, f"{registry}/cli-test/custom-score")
    result = rmodelpack("build", str(folder), "--push")
    assert result.returncode == 1
    assert registry in result.stderr
    assert "Traceback" not in result.stderr
    docker_client.images.remove(re.search(r"built (\S+) ", result.stdout).group(1), force=True)
