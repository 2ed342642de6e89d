"""Fixtures of the adversarial suite: the examples served natively (the runtime `rmodelpack
serve` and the image run), bounded loads that count every failure, and a check that every
worker still serves after an attack.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import require_tool

# The image tests' fixtures (base image, examples built once per session), for the image
# variant of the schemathesis run.
from image.conftest import base_image, build_example, example_env  # noqa: F401
from runtime.server import NativeServer

from adversarial.examples import (
    ModelMissing,
    example_config,
    example_rows,
    start_example,
)
from adversarial.load import json_body
from adversarial.scgi import predict_request, scgi_exchange, scgi_target

SCRIPTS = Path(__file__).resolve().parents[1] / "runtime" / "scripts"
ERROR_KEYS = {"status", "code", "message", "request_id", "details"}


@dataclass
class Served:
    """One example's server, its runtime config and the rows of its sample request."""

    name: str
    server: NativeServer
    config: dict[str, Any]
    rows: list[dict[str, Any]]
    model_path: Path
    workers: int

    def url(self, path: str) -> str:
        return self.server.url(path)


ServeExample = Callable[..., Served]


@pytest.fixture(scope="session")
def serve_example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeExample]:
    """Starts an example natively on a free port (2 workers unless told); stops them all at
    the end. `tweak` edits the runtime config; `env` adds RMP_* variables."""
    require_tool("Rscript")
    started: list[NativeServer] = []

    def serve(
        name: str,
        tweak: Callable[[dict[str, Any]], None] | None = None,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> Served:
        try:
            config, model = example_config(name)
        except ModelMissing as exc:
            pytest.fail(str(exc))
        env = {"RMP_WORKERS": "2", **(env or {})}
        if tweak is not None:
            tweak(config)
        server = start_example(config, model, tmp_path_factory.mktemp(name), env)
        started.append(server)
        if wait:
            server.wait_ready()
        return Served(name, server, config, example_rows(name), model, int(env["RMP_WORKERS"]))

    yield serve
    for server in started:
        server.kill()


def use_script(name: str, **runtime: Any) -> Callable[[dict[str, Any]], None]:
    def tweak(config: dict[str, Any]) -> None:
        config["scoring"]["script"] = str(SCRIPTS / name)
        config["runtime"].update(runtime)

    return tweak


def assert_json_error(status: int, headers: dict[str, str], body: bytes, expected: int) -> dict:
    """The one documented error shape, never nginx's HTML page."""
    assert status == expected, body[:300]
    content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    assert content_type.startswith("application/json"), (content_type, body[:300])
    assert b"<html" not in body.lower()
    error = json.loads(body)["error"]
    assert set(error) == ERROR_KEYS
    assert error["status"] == expected
    return error


def every_worker_serves(served: Served) -> None:
    """Each worker's own SCGI port and the front still answer /predict with 200."""
    body = json_body(served.rows[:2])
    pids = served.server.worker_pids()
    assert sorted(pids) == list(range(1, served.workers + 1)), pids
    target = scgi_target(served.server.run_dir)
    for worker_id in sorted(pids):
        answer = scgi_exchange(target.ports[worker_id - 1], predict_request(body, target.token))
        assert answer.status == 200, f"worker {worker_id}: {answer}"
    response = requests.post(
        served.url("/predict"), data=body, timeout=30, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert requests.get(served.url("/readyz"), timeout=10).status_code == 200
