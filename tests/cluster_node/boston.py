"""The boston-rf example on the real node: rendered values, the image, the overrides the node
needs, R's own predictions, and `kubectl port-forward` on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from cluster.kube import helm, run
from conftest import CHART_DIR, EXAMPLES_DIR, REPO_ROOT, free_port, run_cli

EXAMPLE = EXAMPLES_DIR / "boston-rf"
NATIVE_PREDICT_R = REPO_ROOT / "tests" / "image" / "native_predict.R"
NODE_SCRIPT = REPO_ROOT / "ci" / "node.sh"
USER = "scorer"
PASSWORD = "node-e2e-password"
PASSWORD_ENV = {"BOSTON_SCORER_PASSWORD": PASSWORD}
# Only what the real node needs: its taint tolerated, one small replica, the loaded image.
NODE_OVERRIDES = {
    "replicaCount": 1,
    "autoscaling": {"enabled": False},
    "image": {"pullPolicy": "Never"},
    "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
    "nodeSelector": {"rmodelpack.io/real-node": "true"},
    "tolerations": [
        {
            "key": "rmodelpack.io/real-node",
            "operator": "Equal",
            "value": "true",
            "effect": "NoSchedule",
        }
    ],
}


def predict_body() -> dict:
    return json.loads((EXAMPLE / "requests" / "predict.json").read_text())


def render(out: Path) -> dict:
    done = run_cli("render", str(EXAMPLE), "-o", str(out), env=PASSWORD_ENV)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load((out / "values.yaml").read_text())


def ensure_image(reference: str, out: Path) -> None:
    """The image the rendered values name: reused when docker has it, else built into `out`."""
    if run("docker", "image", "inspect", reference, check=False).returncode == 0:
        return
    done = run_cli("build", str(EXAMPLE), "-o", str(out), env=PASSWORD_ENV, timeout=1800)
    assert done.returncode == 0, done.stderr
    run("docker", "image", "inspect", reference)


def install(release: str, namespace: str, workdir: Path) -> Path:
    """Renders, loads the image into the node and installs the chart (--wait); returns the
    render folder."""
    rendered = workdir / "render"
    values = render(rendered)
    reference = f"{values['image']['repository']}:{values['image']['tag']}"
    ensure_image(reference, workdir / "build")
    run("bash", str(NODE_SCRIPT), "load", reference, timeout=600)
    overrides = workdir / "node-values.yaml"
    overrides.write_text(yaml.safe_dump(NODE_OVERRIDES))
    helm(
        "upgrade", "--install", release, str(CHART_DIR), "-n", namespace,
        "-f", str(rendered / "values.yaml"), "-f", str(overrides),
        "--wait", "--timeout", "300s",
        timeout=360,
    )  # fmt: skip
    return rendered


@contextmanager
def port_forward(namespace: str, target: str, remote_port: int) -> Iterator[int]:
    """`kubectl port-forward` bound to 127.0.0.1 only; yields the local port."""
    port = free_port()
    forward = subprocess.Popen(
        ["kubectl", "port-forward", "-n", namespace, "--address", "127.0.0.1", target,
         f"{port}:{remote_port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert forward.stdout is not None
        first = forward.stdout.readline()
        assert first.startswith(f"Forwarding from 127.0.0.1:{port}"), first
        yield port
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def native_prediction(rendered: Path, rows: list[dict], workdir: Path) -> list[float]:
    """R's own predict() on the host, on the rendered context's model and config."""
    rows_file = workdir / "rows.json"
    rows_file.write_text(json.dumps(rows))
    done = subprocess.run(
        ["Rscript", "--vanilla", str(NATIVE_PREDICT_R), str(rendered / "app" / "rmodelpack.json"),
         str(rendered / "model" / "model.rds"), str(rows_file)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["values"]
