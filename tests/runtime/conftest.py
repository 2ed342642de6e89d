"""Fixtures that run rmodelpack's runtime natively on the bundled Boston example.

The config json comes from the real renderer (`rmodelpack.render.runtime_config`), so these
tests hold the runtime to the same contract the image gets; tests tweak a copy of it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES_DIR, free_port, require_tool

from rmodelpack.manifest import load_manifest
from rmodelpack.render import runtime_config
from runtime.server import NativeServer, start_native_server

BOSTON_DIR = EXAMPLES_DIR / "boston-rf"
BOSTON_MODEL = BOSTON_DIR / "model.rds"

ServerFactory = Callable[..., NativeServer]


def require_native_tools() -> None:
    require_tool("Rscript")
    require_tool("bash")
    if not Path("/usr/sbin/nginx").exists():
        require_tool("nginx")


@pytest.fixture(scope="session")
def boston_model() -> Path:
    """The reference model, trained by examples/boston-rf/train.R when missing or stale."""
    require_native_tools()
    train = BOSTON_DIR / "train.R"
    if not BOSTON_MODEL.exists() or BOSTON_MODEL.stat().st_mtime < train.stat().st_mtime:
        subprocess.run(["Rscript", "--vanilla", "train.R"], cwd=BOSTON_DIR, check=True)
    return BOSTON_MODEL


@pytest.fixture(scope="session")
def boston_config(boston_model: Path) -> dict[str, Any]:
    manifest, _ = load_manifest(BOSTON_DIR / "rmodel.yaml")
    sha256 = hashlib.sha256(boston_model.read_bytes()).hexdigest()
    return runtime_config(manifest, sha256)


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(json.dumps(config, sort_keys=True, indent=2))
    return path


@pytest.fixture(scope="session")
def server_factory(
    tmp_path_factory: pytest.TempPathFactory, boston_config: dict[str, Any], boston_model: Path
) -> Iterator[ServerFactory]:
    """Starts servers on free ports; stops whatever is still running at the end."""
    started: list[NativeServer] = []

    def start(
        tweak: Callable[[dict[str, Any]], None] | None = None,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> NativeServer:
        config = copy.deepcopy(boston_config)
        if tweak is not None:
            tweak(config)
        workdir = tmp_path_factory.mktemp("rmp")
        server = start_native_server(
            write_config(workdir / "rmodelpack.json", config),
            free_port(),
            env={"RMP_MODEL_PATH": str(boston_model), **(env or {})},
            tmpdir=workdir / "tmp",
        )
        started.append(server)
        if wait:
            server.wait_ready()
        return server

    yield start
    for server in started:
        server.kill()


@pytest.fixture(scope="session")
def boston_server(server_factory: ServerFactory) -> NativeServer:
    """The Boston example as rendered, 2 workers, shared by the read-only tests."""
    return server_factory(env={"RMP_WORKERS": "2"})


@pytest.fixture(scope="session")
def r_predictions(boston_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """R's own predict() for Boston rows 1..60 (rows as records, and predictions)."""
    out = tmp_path_factory.mktemp("r") / "expected.json"
    script = (
        "suppressPackageStartupMessages(library(randomForest));"
        f"m <- readRDS('{boston_model}'); rows <- MASS::Boston[1:60, ];"
        "rownames(rows) <- NULL;"
        "out <- list(rows = rows, predictions = unname(predict(m, rows)));"
        f"writeLines(jsonlite::toJSON(out, digits = NA), '{out}')"
    )
    subprocess.run(["Rscript", "--vanilla", "-e", script], check=True)
    return json.loads(out.read_text())


def tweak_runtime(**values: Any) -> Callable[[dict[str, Any]], None]:
    def tweak(config: dict[str, Any]) -> None:
        config["runtime"].update(values)

    return tweak
