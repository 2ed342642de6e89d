"""runtime.threads: the thread budget reaches the model's own knob and the BLAS/OpenMP variables."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
import requests
from conftest import EXAMPLES_DIR, free_port

from rmodelpack.manifest import load_manifest
from rmodelpack.render import runtime_config
from runtime.server import RUNTIME_DIR, start_native_server

CARS = EXAMPLES_DIR / "cars93-ranger"


def r_eval(code: str) -> str:
    sources = "; ".join(f"source('{RUNTIME_DIR / name}')" for name in ("errors.R", "model.R"))
    completed = subprocess.run(
        ["Rscript", "--vanilla", "-e", f"{sources}; {code}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=CARS,
    )
    return completed.stdout.strip()


def test_ranger_gets_the_worker_thread_budget():
    if not (CARS / "model.rds").exists():
        pytest.skip("examples/cars93-ranger/model.rds is not trained (run: bash ci/setup.sh)")
    code = (
        "suppressPackageStartupMessages(library(ranger)); m <- readRDS('model.rds');"
        "cat(rmp_thread_args(m, list(), 3)$num.threads,"
        " rmp_thread_args(m, list(num.threads = 1), 3)$num.threads,"
        " is.null(rmp_thread_args(lm(dist ~ speed, cars), list(), 3)$num.threads))"
    )
    assert r_eval(code).split() == ["3", "1", "TRUE"]


@pytest.fixture(scope="module")
def cars_config(tmp_path_factory) -> Path:
    if not (CARS / "model.rds").exists():
        pytest.skip("examples/cars93-ranger/model.rds is not trained (run: bash ci/setup.sh)")
    manifest, _ = load_manifest(CARS)
    sha = hashlib.sha256((CARS / "model.rds").read_bytes()).hexdigest()
    path = tmp_path_factory.mktemp("cars") / "rmodelpack.json"
    path.write_text(json.dumps(runtime_config(manifest, sha)))
    return path


def predictions_with_threads(config: Path, threads: int, tmp: Path) -> tuple[list, str]:
    server = start_native_server(
        config,
        free_port(),
        env={
            "RMP_MODEL_PATH": str(CARS / "model.rds"),
            "RMP_WORKERS": "1",
            "RMP_THREADS": str(threads),
            "RMP_DRAIN_SECONDS": "0",
        },
        tmpdir=tmp / f"threads-{threads}",
    )
    try:
        server.wait_ready()
        body = (CARS / "requests" / "predict.json").read_text()
        response = requests.post(
            server.url("/predict"),
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        metadata = requests.get(server.url("/metadata"), timeout=10).json()
        omp = metadata["runtime"]["omp_num_threads"]
        assert metadata["runtime"]["threads"] == threads
        return response.json()["predictions"], omp
    finally:
        server.terminate()


def test_threads_change_nothing_but_speed(cars_config: Path, tmp_path: Path):
    one, omp_one = predictions_with_threads(cars_config, 1, tmp_path)
    two, omp_two = predictions_with_threads(cars_config, 2, tmp_path)
    assert one == two
    assert (omp_one, omp_two) == ("1", "2")
