"""Every example, built into a real image and run hardened: it serves exactly what R predicts.

Each container runs with a read-only root, a tmpfs /tmp, no capabilities, no new privileges and
the non-root uid, published on 127.0.0.1 only. The ground truth is R's own predict() (or the
example's score()) run natively on the host, on the same rows (tests/image/native_predict.R).
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from conftest import REPO_ROOT

from image.containers import (
    UID,
    example_names,
    expected_predictions,
    hardened_container,
    native_prediction,
    remove_image,
    request_rows,
    wait_ready,
)

pytestmark = [pytest.mark.docker, pytest.mark.r, pytest.mark.slow]

TOLERANCE = 1e-9


@pytest.fixture(scope="module", params=example_names())
def served(request, docker_client, build_example):
    """One hardened container per example, ready to score."""
    image = build_example(request.param)
    # Only the check interval changes (to see "healthy" quickly); the check is the image's.
    with hardened_container(
        docker_client, image.tag, healthcheck={"interval": 1_000_000_000, "start_period": 0}
    ) as running:
        wait_ready(running)
        yield image, running


def assert_close(actual: Any, expected: Any, where: str = "predictions") -> None:
    """Equal structure and strings; numbers within TOLERANCE."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and sorted(actual) == sorted(expected), where
        for key in expected:
            assert_close(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for index, (got, want) in enumerate(zip(actual, expected, strict=True)):
            assert_close(got, want, f"{where}[{index}]")
    elif isinstance(expected, (int, float)) and not isinstance(expected, bool):
        assert math.isclose(actual, expected, rel_tol=0, abs_tol=TOLERANCE), (
            f"{where}: served {actual!r}, R gives {expected!r}"
        )
    else:
        assert actual == expected, f"{where}: served {actual!r}, R gives {expected!r}"


def test_predict_matches_r_predict_run_natively(served, tmp_path):
    image, running = served
    body = json.loads((image.example_dir / "requests" / "predict.json").read_text())

    response = requests.post(f"{running.url}/predict", json=body, timeout=60)

    assert response.status_code == 200, response.text
    native = native_prediction(image, request_rows(body), tmp_path)
    expected = expected_predictions(image.config["output"]["kind"], native)
    assert_close(response.json()["predictions"], expected)


def test_image_carries_labels_healthcheck_user_port_and_entrypoint(served, docker_client):
    image, _ = served
    config = docker_client.images.get(image.tag).attrs["Config"]
    model_bytes = (image.example_dir / "model.rds").read_bytes()

    labels = config["Labels"]
    assert labels["io.rmodelpack.model.name"] == image.name
    assert labels["io.rmodelpack.model.version"] == image.config["version"]
    assert labels["io.rmodelpack.model.sha256"] == hashlib.sha256(model_bytes).hexdigest()
    assert labels["org.opencontainers.image.title"] == image.name
    assert labels["org.opencontainers.image.version"] == image.config["version"]
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"  # inherited from the base
    assert config["User"] == f"{UID}:{UID}"
    assert list(config["ExposedPorts"]) == ["8000/tcp"]
    assert config["Entrypoint"] == [
        "/usr/bin/tini",
        "--",
        "/opt/rmodelpack/runtime/entrypoint.sh",
    ]
    assert "RMP_TMPDIR=/tmp" in config["Env"]
    assert config["Healthcheck"]["Test"] == [
        "CMD",
        "curl",
        "-fsS",
        "-o",
        "/dev/null",
        "http://127.0.0.1:8000/healthz",
    ]


def test_healthcheck_turns_healthy(served):
    _, running = served
    deadline = time.monotonic() + 60
    status = None
    while time.monotonic() < deadline:
        running.container.reload()
        status = running.container.attrs["State"]["Health"]["Status"]
        if status == "healthy":
            break
        time.sleep(0.5)
    assert status == "healthy", running.container.attrs["State"]["Health"]


def test_serves_hardened_and_writes_nothing_outside_tmp(served, docker_client):
    _, running = served
    host_config = running.container.attrs["HostConfig"]
    assert host_config["ReadonlyRootfs"] is True
    assert host_config["CapDrop"] == ["ALL"]
    assert "/tmp" in host_config["Tmpfs"]

    uid = running.container.exec_run(["id", "-u"], user="")
    assert uid.output.decode().strip() == str(UID)
    # The image's files belong to root: the service cannot change its own code or model.
    denied = running.container.exec_run(["touch", "/opt/rmodelpack/app/x"])
    assert denied.exit_code != 0
    # A request was served above; the root filesystem holds no change (tmpfs is not in the diff).
    requests.get(f"{running.url}/metadata", timeout=10).raise_for_status()
    assert running.container.diff() in (None, [])


def test_docker_stop_completes_in_flight_requests(docker_client, build_example):
    image = build_example(example_names()[0])
    body = json.loads((image.example_dir / "requests" / "predict.json").read_text())
    rows = request_rows(body)
    # Requests big enough to still be running when SIGTERM arrives.
    batch = (rows * (1000 // len(rows) + 1))[:1000]
    with hardened_container(docker_client, image.tag, environment={"RMP_DRAIN_SECONDS": "1"}) as (
        running
    ):
        wait_ready(running)
        started = threading.Barrier(9)

        def post() -> int:
            started.wait()
            return requests.post(f"{running.url}/predict", json=batch, timeout=120).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(post) for _ in range(8)]
            started.wait()
            time.sleep(0.05)  # the requests are on the wire
            running.container.stop(timeout=60)
            statuses = [future.result() for future in futures]

        running.container.reload()
        assert statuses == [200] * 8
        assert running.container.attrs["State"]["ExitCode"] == 0, running.container.logs()[-2000:]


@pytest.mark.parametrize(
    ("example", "field"), [("cars93-ranger", "drive_train"), ("caret-recipes", "race")]
)
def test_invalid_factor_level_is_rejected_with_the_field_named(
    docker_client, build_example, example, field
):
    image = build_example(example)
    body = json.loads((image.example_dir / "requests" / "invalid-level.json").read_text())
    with hardened_container(docker_client, image.tag) as running:
        wait_ready(running)
        response = requests.post(f"{running.url}/predict", json=body, timeout=30)
    assert response.status_code == 422
    details = response.json()["error"]["details"]
    assert [(detail["row"], detail["field"]) for detail in details] == [(0, field)]


def test_cli_build_reuses_the_cached_layers_and_tags_the_manifest_image(
    build_example, docker_client, tmp_path, example_env
):
    """`python -m rmodelpack build examples/<x>` builds the same image the library built."""
    image = build_example("boston-rf")
    done = subprocess.run(
        [sys.executable, "-m", "rmodelpack", "build", "examples/boston-rf", "-o", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    reference = done.stdout.split("built ", 1)[1].split()[0]
    try:
        assert reference.startswith("127.0.0.1:5000/models/boston-rf:1.0.0-")
        assert docker_client.images.get(reference).id == image.image_id
    finally:
        remove_image(docker_client, reference)
