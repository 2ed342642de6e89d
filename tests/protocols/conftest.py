"""Fixtures of the protocol tests: each example served natively and as its image."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

# The image tests' session fixtures (base image, one build per example) serve these tests too.
from image.conftest import base_image, build_example, example_env  # noqa: F401
from image.containers import hardened_container, wait_ready

from protocols.oip import r_predictions, sample_rows, start_example_server

EXAMPLES = ("boston-rf", "cars93-ranger")


@dataclass(frozen=True)
class Served:
    example: str
    target: str  # "native" or "image"
    url: str
    truth: dict[str, Any]  # rows, and R's own predict() on them (host R)


def _targets() -> list[Any]:
    marks = {"native": [pytest.mark.r], "image": [pytest.mark.docker, pytest.mark.slow]}
    return [
        pytest.param((example, target), id=f"{example}-{target}", marks=marks[target])
        for example in EXAMPLES
        for target in ("native", "image")
    ]


@pytest.fixture(scope="module", params=_targets())
def served(request, tmp_path_factory) -> Iterator[Served]:
    example, target = request.param
    rows = sample_rows(example)
    truth = {"rows": rows, **r_predictions(example, rows, tmp_path_factory.mktemp("truth"))}
    if target == "native":
        server = start_example_server(example, tmp_path_factory.mktemp(example))
        try:
            yield Served(example, target, server.base_url, truth)
        finally:
            server.kill()
        return
    image = request.getfixturevalue("build_example")(example)
    client = request.getfixturevalue("docker_client")
    with hardened_container(client, image.tag) as running:
        wait_ready(running)
        yield Served(example, target, running.url, truth)
