"""Fixtures for the offline Kubernetes control plane (ci/cluster.sh).

The session fixture builds the binaries (first run only), starts the cluster and points
KUBECONFIG at it. Each test works in its own namespace that enforces Pod Security "restricted".
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BIN_DIR, require_tool

from cluster.kube import (
    CLUSTER_BINARIES,
    CLUSTER_SCRIPT,
    create_namespace,
    delete_namespace,
    run,
)

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster() -> str:
    """Starts the control plane (idempotent) and returns the admin kubeconfig path."""
    for tool in ("openssl", "curl", "jq", "helm"):
        require_tool(tool)
    if not all((BIN_DIR / name).exists() for name in CLUSTER_BINARIES):
        require_tool("go")  # the first `up` builds them from the Go module proxy
    run("bash", str(CLUSTER_SCRIPT), "up", timeout=3600)
    exported = run("bash", str(CLUSTER_SCRIPT), "env").stdout.strip()
    kubeconfig = exported.removeprefix("export KUBECONFIG=")
    os.environ["KUBECONFIG"] = kubeconfig
    return kubeconfig


@pytest.fixture
def namespace(cluster: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace that enforces Pod Security "restricted"; deleted afterwards."""
    name = create_namespace(request.node.originalname.replace("_", "-"))
    yield name
    delete_namespace(name)
