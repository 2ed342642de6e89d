"""The examples as the adversarial suite serves them: runtime config from the real renderer,
the sample request's rows, and a native server started on a free port."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path
from typing import Any

from runtime.server import NativeServer, start_native_server

from rmodelpack.manifest import load_manifest
from rmodelpack.render import runtime_config

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
EXAMPLES = ("boston-rf", "cars93-ranger")


class ModelMissing(Exception):
    pass


def example_rows(name: str) -> list[dict[str, Any]]:
    body = json.loads((EXAMPLES_DIR / name / "requests" / "predict.json").read_text())
    return body["data"] if isinstance(body, dict) else body


def example_config(name: str) -> tuple[dict[str, Any], Path]:
    """(runtime config as `rmodelpack render` writes it, the example's model file)."""
    example_dir = EXAMPLES_DIR / name
    model = example_dir / "model.rds"
    if not model.is_file():
        raise ModelMissing(f"{model} is missing; run: bash ci/setup.sh")
    manifest, _ = load_manifest(example_dir / "rmodel.yaml")
    return runtime_config(manifest, hashlib.sha256(model.read_bytes()).hexdigest()), model


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_example(
    config: dict[str, Any], model: Path, workdir: Path, env: dict[str, str]
) -> NativeServer:
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "rmodelpack.json"
    config_path.write_text(json.dumps(config, sort_keys=True, indent=2))
    return start_native_server(
        config_path,
        free_port(),
        env={"RMP_MODEL_PATH": str(model), **env},
        tmpdir=workdir / "tmp",
    )
