"""Helpers of the image tests: hardened containers on 127.0.0.1, readiness, and R's own
predictions computed natively on the host as the ground truth.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import EXAMPLES_DIR, free_port, require_tool

from rmodelpack.serve import run_hardened

HERE = Path(__file__).resolve().parent
NATIVE_PREDICT_R = HERE / "native_predict.R"
TEST_REPOSITORY = "rmodelpack-test"
READY_TIMEOUT_SECONDS = 120
UID = 10001


def example_names() -> list[str]:
    """Every example with a manifest and a sample request."""
    return sorted(
        path.parent.name
        for path in EXAMPLES_DIR.glob("*/rmodel.yaml")
        if (path.parent / "requests" / "predict.json").is_file()
    )


@dataclass(frozen=True)
class ExampleImage:
    name: str
    example_dir: Path
    context_dir: Path
    tag: str
    image_id: str
    model_sha256: str

    @property
    def config(self) -> dict[str, Any]:
        return json.loads((self.context_dir / "app" / "rmodelpack.json").read_text())


def remove_image(client, ref: str) -> None:
    import docker.errors

    # Already gone is fine: the goal is only not to leave test images behind.
    with contextlib.suppress(docker.errors.NotFound):
        client.images.remove(ref, force=True)


@dataclass(frozen=True)
class Running:
    container: Any
    url: str


@contextmanager
def hardened_container(client, image: str, **options: Any) -> Iterator[Running]:
    """Run ``image`` as `rmodelpack serve --docker` does: read-only, tmpfs /tmp, no
    capabilities, as 10001, on a 127.0.0.1 port (the tests inspect that it really is so)."""
    port = free_port()
    container = run_hardened(client, image, port, **options)
    try:
        yield Running(container, f"http://127.0.0.1:{port}")
    finally:
        container.remove(force=True)


def wait_ready(running: Running, timeout: float = READY_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running.container.reload()
        if running.container.status == "exited":
            logs = running.container.logs().decode(errors="replace")[-3000:]
            pytest.fail(f"the container exited before /readyz turned 200:\n{logs}")
        try:
            if requests.get(f"{running.url}/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    logs = running.container.logs().decode(errors="replace")[-3000:]
    pytest.fail(f"/readyz did not turn 200 within {timeout}s:\n{logs}")


def request_rows(body: Any) -> list[dict[str, Any]]:
    """The rows of a /predict body: a bare list or {"data": [...]}."""
    return body["data"] if isinstance(body, dict) else body


def trainer_image(example_dir: Path) -> str | None:
    """The image an example with a train.sh is trained in (its packages are not on the host)."""
    if not (example_dir / "train.sh").is_file():
        return None
    return f"rmodelpack-train/{example_dir.name}:trixie"


def train_in_image(example_dir: Path) -> None:
    """Run the example's train.sh (it trains inside the trixie image) when model.rds is missing."""
    if (example_dir / "model.rds").is_file():
        return
    done = subprocess.run(
        ["bash", str(example_dir / "train.sh")], capture_output=True, text=True, timeout=1200
    )
    if done.returncode != 0:
        pytest.fail(f"{example_dir}/train.sh failed:\n{done.stderr[-3000:]}")


def native_prediction(image: ExampleImage, rows: list[dict[str, Any]], workdir: Path) -> dict:
    """What R itself predicts for ``rows`` (the test's ground truth): R on the host, or, for an
    example trained in an image (train.sh), R in that training image, outside the served one."""
    rows_file = workdir / "rows.json"
    rows_file.write_text(json.dumps(rows))
    files = [
        NATIVE_PREDICT_R,
        image.context_dir / "app" / "rmodelpack.json",
        image.context_dir / "model" / "model.rds",
        rows_file,
    ]
    script = image.config["scoring"]["script"]
    if script:
        files.append(image.context_dir / "app" / Path(script).name)
    trainer = trainer_image(image.example_dir)
    if trainer is None:
        command = [require_tool("Rscript"), "--vanilla", *map(str, files)]
    else:
        mounts = [arg for i, f in enumerate(files) for arg in ("-v", f"{f}:/in/{i}:ro")]
        inside = [f"/in/{i}" for i in range(len(files))]
        command = [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            *mounts,
            trainer,
            "Rscript",
            "--vanilla",
            *inside,
        ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        pytest.fail(f"native R prediction failed:\n{done.stderr}")
    return json.loads(done.stdout)


def expected_predictions(kind: str, native: dict) -> list[Any]:
    """The runtime's documented response shape for ``output.kind``, built from R's values."""
    values, classes = native["values"], native["classes"]
    if kind in ("value", "class"):
        return values
    probabilities = [dict(zip(classes, row, strict=True)) for row in values]
    if kind == "probabilities":
        return probabilities
    return [
        {"class": classes[max(range(len(row)), key=row.__getitem__)], "probabilities": p}
        for row, p in zip(values, probabilities, strict=True)
    ]
