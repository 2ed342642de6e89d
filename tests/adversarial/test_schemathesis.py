"""schemathesis against each example's own /openapi.json, natively and in the image: every
phase (examples, coverage — unexpected methods and edge values —, fuzzing), checks
not_a_server_error, content_type_conformance, negative_data_rejection,
positive_data_acceptance (and the 405/Allow checks). At least 1,000 cases per example, zero
failures, and the server still serves afterwards. benchmarks/reliability_long.py runs ≥10,000.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from image.containers import hardened_container, wait_ready

from adversarial.conftest import ServeExample, every_worker_serves
from adversarial.examples import EXAMPLES, example_rows
from adversarial.fuzz import run_schemathesis

MIN_CASES = 1000
# Per-operation budgets that give each example's document at least MIN_CASES cases.
MAX_EXAMPLES = {"boston-rf": 75, "cars93-ranger": 130}


@pytest.mark.r
@pytest.mark.slow
@pytest.mark.parametrize("name", EXAMPLES)
def test_schemathesis_finds_nothing_natively(
    serve_example: ServeExample, name: str, tmp_path: Path
) -> None:
    served = serve_example(name)
    result = run_schemathesis(served.server.base_url, MAX_EXAMPLES[name], tmp_path)
    print(f"{name}: {result.cases} cases, problems {result.problems}")
    assert result.problems == [], result.summary()
    assert result.exit_code == 0, result.summary()
    assert result.cases >= MIN_CASES, result.summary()
    every_worker_serves(served)


@pytest.mark.docker
@pytest.mark.r
@pytest.mark.slow
def test_schemathesis_finds_nothing_in_the_image(
    docker_client, build_example, tmp_path: Path
) -> None:
    name = "boston-rf"
    image = build_example(name)
    with hardened_container(docker_client, image.tag) as running:
        wait_ready(running)
        result = run_schemathesis(running.url, MAX_EXAMPLES[name], tmp_path)
        print(f"{name} (image): {result.cases} cases, problems {result.problems}")
        assert result.problems == [], result.summary()
        assert result.exit_code == 0, result.summary()
        assert result.cases >= MIN_CASES, result.summary()
        response = requests.post(f"{running.url}/predict", json=example_rows(name), timeout=30)
        assert response.status_code == 200, response.text
        assert requests.get(f"{running.url}/readyz", timeout=10).status_code == 200
        running.container.reload()
        assert running.container.status == "running"
