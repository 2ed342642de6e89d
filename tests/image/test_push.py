"""push_image against the local registry (127.0.0.1:5000, the stand-in for ACR)."""

from __future__ import annotations

import pytest
import requests
from conftest import free_port

from image.containers import remove_image
from rmodelpack.build import push_image, registry_of
from rmodelpack.exceptions import PushError

pytestmark = [pytest.mark.docker]

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    ]
)


@pytest.mark.registry
def test_pushed_image_is_pulled_back_by_its_digest(docker_client, registry, build_example):
    image = build_example("custom-score")
    repository = f"{registry}/rmodelpack-test/custom-score"
    reference = f"{repository}:push-test"
    docker_client.images.get(image.tag).tag(repository, "push-test")
    progress: list[str] = []
    try:
        pushed = push_image(reference, client=docker_client, on_progress=progress.append)
        name, digest = pushed.split("@")

        # The registry itself serves that manifest under that digest.
        manifest = requests.get(
            f"http://{registry}/v2/rmodelpack-test/custom-score/manifests/{digest}",
            headers={"Accept": MANIFEST_TYPES},
            timeout=10,
        )
        remove_image(docker_client, reference)  # the pull below must come from the registry
        pulled = docker_client.images.pull(pushed)
        deleted = requests.delete(
            f"http://{registry}/v2/rmodelpack-test/custom-score/manifests/{digest}", timeout=10
        )
    finally:
        remove_image(docker_client, reference)
        remove_image(docker_client, pushed if "pushed" in locals() else reference)

    assert name == repository
    assert digest.startswith("sha256:") and len(digest) == 71
    assert manifest.status_code == 200
    assert manifest.headers["Docker-Content-Digest"] == digest
    assert pulled.id == image.image_id
    assert pushed in pulled.attrs["RepoDigests"]
    assert deleted.status_code == 202  # and the registry is tidy again
    assert any("Pushed" in line or "exists" in line for line in progress)


def test_unreachable_registry_is_a_push_error_naming_it(docker_client, build_example):
    image = build_example("custom-score")
    registry = f"127.0.0.1:{free_port()}"  # nothing listens there
    reference = f"{registry}/models/custom-score:1"
    docker_client.images.get(image.tag).tag(f"{registry}/models/custom-score", "1")
    try:
        with pytest.raises(PushError) as failure:
            push_image(reference, client=docker_client)
    finally:
        remove_image(docker_client, reference)

    message = str(failure.value)
    assert f"registry {registry} cannot be reached" in message
    assert "docker login" in message and "az acr login" in message


def test_pushing_an_image_that_was_never_built_says_build_it_first(docker_client):
    with pytest.raises(PushError, match="build it first"):
        push_image("127.0.0.1:5000/rmodelpack-test/never-built:1", client=docker_client)


@pytest.mark.parametrize(
    ("repository", "registry"),
    [
        ("myacr.azurecr.io/models/boston-rf", "myacr.azurecr.io"),
        ("127.0.0.1:5000/models/boston-rf", "127.0.0.1:5000"),
        ("localhost/models/x", "localhost"),
        ("rmodelpack/boston-rf", "docker.io"),
        ("boston-rf", "docker.io"),
    ],
)
def test_registry_of_a_repository(repository, registry):
    assert registry_of(repository) == registry
