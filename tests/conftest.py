"""Shared test policy and fixtures.

A test may skip only when a tool is truly missing; under CI (CI=true) every skip is a failure,
because CI installs everything through ci/setup.sh.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN_DIR = REPO_ROOT / ".bin"
EXAMPLES_DIR = REPO_ROOT / "examples"
CHART_DIR = REPO_ROOT / "chart"
REGISTRY = "127.0.0.1:5000"
UNDER_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# The project's pinned tools come first, whatever the caller's PATH.
os.environ["PATH"] = f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}"


def require_tool(name: str) -> str:
    """Return the tool's path, or skip the test when it is not installed (a failure under CI)."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (run: bash ci/setup.sh)")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: int = 900
) -> subprocess.CompletedProcess[str]:
    """Run `python -m rmodelpack ARGS` as a user does; extra environment on top of ours."""
    return subprocess.run(
        [sys.executable, "-m", "rmodelpack", *args],
        capture_output=True,
        text=True,
        cwd=cwd or REPO_ROOT,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if UNDER_CI and report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which installs every tool: {reason}"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def docker_client():
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"the Docker engine is not answering ({exc}); run: bash ci/setup.sh")
    return client


@pytest.fixture(scope="session")
def registry() -> str:
    import urllib.request

    try:
        urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=5).close()
    except OSError as exc:
        pytest.skip(f"the local registry on {REGISTRY} is not answering ({exc})")
    return REGISTRY


def nested(dotted: str, value: object) -> dict:
    """{"a": {"b": value}} for "a.b": one setting as the values or manifest tree that holds it."""
    tree: dict = {}
    node = tree
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return tree


def deep_merge(base: dict, override: dict) -> dict:
    """`base` with `override` merged in: maps merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        both_maps = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = deep_merge(merged[key], value) if both_maps else value
    return merged


def metric_samples(metrics_url: str) -> dict[str, float]:
    """Every sample of a Prometheus text exposition at `metrics_url`: series (name{labels}) →
    value."""
    text = requests.get(metrics_url, timeout=10).text
    pairs = (line.rsplit(" ", 1) for line in text.splitlines() if line and line[0] != "#")
    return {series: float(value) for series, value in pairs}
