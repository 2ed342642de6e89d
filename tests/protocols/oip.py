"""Helpers of the inference-protocol tests: example servers run natively, request tensors built
from rows, and R's own predictions as the ground truth (tests/image/native_predict.R).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from conftest import EXAMPLES_DIR, free_port, require_tool
from runtime.server import NativeServer, start_native_server

from rmodelpack.manifest import load_manifest
from rmodelpack.render import runtime_config

NATIVE_PREDICT_R = Path(__file__).resolve().parents[1] / "image" / "native_predict.R"
DATATYPES = {
    "number": "FP64",
    "integer": "INT64",
    "boolean": "BOOL",
    "string": "BYTES",
    "factor": "BYTES",
}


def example_model(name: str) -> Path:
    """The example's model.rds, trained by its train.R when missing or stale."""
    require_tool("Rscript")
    example = EXAMPLES_DIR / name
    model, train = example / "model.rds", example / "train.R"
    if not model.exists() or model.stat().st_mtime < train.stat().st_mtime:
        subprocess.run(["Rscript", "--vanilla", "train.R"], cwd=example, check=True)
    return model


def example_config(name: str) -> dict[str, Any]:
    """The runtime config the renderer writes for the example (its rmodelpack.json)."""
    manifest, _ = load_manifest(EXAMPLES_DIR / name / "rmodel.yaml")
    sha256 = hashlib.sha256(example_model(name).read_bytes()).hexdigest()
    return runtime_config(manifest, sha256)


def start_example_server(name: str, workdir: Path, workers: int = 1) -> NativeServer:
    """The example served natively, as `rmodelpack serve` does; the caller kills it."""
    config = workdir / "rmodelpack.json"
    config.write_text(json.dumps(example_config(name)))
    server = start_native_server(
        config,
        free_port(),
        env={"RMP_MODEL_PATH": str(example_model(name)), "RMP_WORKERS": str(workers)},
        tmpdir=workdir / "tmp",
    )
    server.wait_ready()
    return server


def sample_rows(name: str) -> list[dict[str, Any]]:
    body = json.loads((EXAMPLES_DIR / name / "requests" / "predict.json").read_text())
    return body["data"] if isinstance(body, dict) else body


def input_tensors(rows: list[dict[str, Any]], columns: list[dict[str, Any]]) -> list[dict]:
    """One 1-D tensor per column, as the Open Inference Protocol's JSON request holds them."""
    return [
        {
            "name": column["name"],
            "datatype": DATATYPES[column["type"]],
            "shape": [len(rows)],
            "data": [row[column["name"]] for row in rows],
        }
        for column in columns
    ]


def r_predictions(name: str, rows: list[dict[str, Any]], workdir: Path) -> dict[str, Any]:
    """R's predict() on the host for ``rows``: {"values": [...], "classes": [...] or None}."""
    rscript = require_tool("Rscript")
    config_file = workdir / f"{name}-config.json"
    config_file.write_text(json.dumps(example_config(name)))
    rows_file = workdir / f"{name}-rows.json"
    rows_file.write_text(json.dumps(rows))
    done = subprocess.run(
        [
            rscript,
            "--vanilla",
            str(NATIVE_PREDICT_R),
            str(config_file),
            str(example_model(name)),
            str(rows_file),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def expected_tensors(native: dict[str, Any]) -> dict[str, list[Any]]:
    """The outputs the server must send for R's predictions: predictions, or class + prob_*."""
    values, classes = native["values"], native["classes"]
    if classes is None:
        return {"predictions": values}
    tensors: dict[str, list[Any]] = {
        "class": [classes[max(range(len(row)), key=row.__getitem__)] for row in values]
    }
    for index, name in enumerate(classes):
        tensors[f"prob_{name}"] = [row[index] for row in values]
    return tensors


TOLERANCE = 1e-9


def assert_same(actual: Any, expected: Any, where: str = "outputs") -> None:
    """Equal structure and strings; numbers within TOLERANCE (R's JSON has 15 digits)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and sorted(actual) == sorted(expected), where
        for key in expected:
            assert_same(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert list(actual) == actual and len(actual) == len(expected), where
        for index, (got, want) in enumerate(zip(actual, expected, strict=True)):
            assert_same(got, want, f"{where}[{index}]")
    elif isinstance(expected, float):
        assert abs(float(actual) - expected) <= TOLERANCE, f"{where}: {actual!r} != {expected!r}"
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"
