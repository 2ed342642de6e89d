"""build.py against the real engine: the in-memory context, layer reuse, and build failures."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import EXAMPLES_DIR, require_tool

from image.containers import TEST_REPOSITORY, remove_image
from rmodelpack import render
from rmodelpack.build import BuildResult, build_image, context_files, context_tar
from rmodelpack.exceptions import BuildError

MODEL_COPY = "COPY model/model.rds /opt/rmodelpack/model/model.rds"


def tar_members(context_dir: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=context_tar(context_dir)) as archive:
        return {member.name: member for member in archive.getmembers()}


@pytest.fixture
def rendered_cars(tmp_path) -> Path:
    return render(EXAMPLES_DIR / "cars93-ranger" / "rmodel.yaml", tmp_path / "out").out_dir


def test_context_holds_only_what_the_dockerignore_lets_through(rendered_cars):
    (rendered_cars / "notes.txt").write_text("a stray file in the output folder\n")

    names = set(tar_members(rendered_cars))

    assert "values.yaml" not in names
    assert "notes.txt" not in names
    assert {"Dockerfile", "app/rmodelpack.json", "model/model.rds"} <= names
    assert "runtime/entrypoint.sh" in names
    assert names == set(context_files(rendered_cars))


def test_context_tar_is_byte_identical_whatever_the_owners_and_times(rendered_cars):
    first = context_tar(rendered_cars).read()
    for path in rendered_cars.rglob("*"):
        path.touch()  # new mtimes, as after a fresh render

    assert context_tar(rendered_cars).read() == first
    members = tar_members(rendered_cars).values()
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "", "", 0)}
    modes = {m.name: m.mode for m in members}
    assert modes["runtime/entrypoint.sh"] == 0o755  # the exec bit survives
    assert modes["model/model.rds"] == 0o644


@pytest.mark.docker
def test_rebuild_after_retraining_reuses_every_layer_before_the_model(
    docker_client, base_image, tmp_path
):
    """Only the model changes: every step before COPY model is cached, the model is not."""
    rscript = require_tool("Rscript")
    example = tmp_path / "cars93-ranger"
    shutil.copytree(EXAMPLES_DIR / "cars93-ranger", example)
    tag = f"{TEST_REPOSITORY}/retrain:test"
    try:
        first = build_image(render(example, tmp_path / "out").out_dir, tag, client=docker_client)
        again = build_image(render(example, tmp_path / "out").out_dir, tag, client=docker_client)
        retrain(rscript, example, seed=7)
        retrained = build_image(
            render(example, tmp_path / "out").out_dir, tag, client=docker_client
        )
    finally:
        remove_image(docker_client, tag)

    assert again.image_id == first.image_id
    assert again.rebuilt_steps == ()
    model_step = step_number(retrained, MODEL_COPY)
    before_model = retrained.steps[1 : model_step - 1]  # after FROM
    assert before_model and all(step.cached for step in before_model), before_model
    assert retrained.rebuilt_steps[0].instruction == MODEL_COPY
    assert retrained.image_id != first.image_id


def retrain(rscript: str, example: Path, *, seed: int) -> None:
    train = example / "train.R"
    train.write_text(train.read_text().replace("seed = 20240601", f"seed = {seed}"))
    subprocess.run([rscript, "--vanilla", "train.R"], cwd=example, check=True, capture_output=True)


def step_number(result: BuildResult, instruction: str) -> int:
    return next(step.number for step in result.steps if step.instruction == instruction)


@pytest.mark.docker
def test_failing_step_raises_build_error_with_the_message_and_last_output(docker_client, tmp_path):
    (tmp_path / "Dockerfile").write_text(
        "FROM debian:trixie-slim\nRUN echo preparing-the-model && exit 3\n"
    )
    progress: list[str] = []

    with pytest.raises(BuildError) as failure:
        build_image(
            tmp_path,
            f"{TEST_REPOSITORY}/broken:test",
            client=docker_client,
            on_progress=progress.append,
        )

    message = str(failure.value)
    assert "returned a non-zero code: 3" in message
    assert "preparing-the-model" in message  # the last log lines come along
    assert any("preparing-the-model" in line for line in progress)


@pytest.mark.docker
def test_missing_base_image_says_how_to_build_it(docker_client, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM rmodelpack/r-base:no-such-tag\n")

    with pytest.raises(BuildError, match=r"build_base_image"):
        build_image(tmp_path, f"{TEST_REPOSITORY}/nobase:test", client=docker_client)


def test_context_without_dockerfile_is_a_build_error(tmp_path):
    with pytest.raises(BuildError, match="render the manifest first"):
        build_image(tmp_path, "x:y")
