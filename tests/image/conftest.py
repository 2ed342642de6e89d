"""Fixtures of the image tests: the base image once per session, and each example rendered and
built once per session (docker's layer cache makes a second session quick).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import EXAMPLES_DIR

from image.containers import (
    TEST_REPOSITORY,
    ExampleImage,
    remove_image,
    train_in_image,
    trainer_image,
)

# Manifests that read passwords from the environment get a throwaway one in tests.
EXAMPLE_ENV = {"BOSTON_SCORER_PASSWORD": "test-only-password"}


@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    from rmodelpack.build import build_base_image

    return build_base_image("debian", client=docker_client)


@pytest.fixture(scope="session")
def example_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in EXAMPLE_ENV.items():
            patch.setenv(key, value)
        yield


@pytest.fixture(scope="session")
def build_example(docker_client, base_image, example_env, tmp_path_factory):
    """Render and build an example once per session (by name); the images go at the end."""
    from rmodelpack import render
    from rmodelpack.build import build_image

    built: dict[str, ExampleImage] = {}

    def build(name: str) -> ExampleImage:
        if name not in built:
            example_dir = EXAMPLES_DIR / name
            if trainer_image(example_dir) is not None:
                train_in_image(example_dir)
            if not (example_dir / "model.rds").is_file():
                pytest.fail(f"{example_dir}/model.rds is missing; run: bash ci/setup.sh")
            rendered = render(example_dir / "rmodel.yaml", tmp_path_factory.mktemp(name) / "out")
            tag = f"{TEST_REPOSITORY}/{name}:{rendered.image.rsplit(':', 1)[1]}"
            result = build_image(rendered.out_dir, tag, client=docker_client)
            built[name] = ExampleImage(
                name, example_dir, rendered.out_dir, tag, result.image_id, rendered.model_sha256
            )
        return built[name]

    yield build
    for image in built.values():
        remove_image(docker_client, image.tag)
