"""Fixtures for the offline Kubernetes control plane (testbed/cluster.sh).

The session fixture builds the binaries (first run only), starts the cluster, points KUBECONFIG
at it and, at the end, takes down what it started (tests/cluster/lifecycle.py). Each test works
in its own namespace that enforces Pod Security "restricted".
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BIN_DIR, require_tool

from cluster.kube import CLUSTER_BINARIES, CLUSTER_SCRIPT, create_namespace, delete_namespace
from cluster.lifecycle import CLUSTER, in_use

HERE = Path(__file__).resolve().parent


# The first test also pays for `testbed/cluster.sh up` on a machine where nothing is built yet.
COLD_START_TIMEOUT = 3600


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    ours = [item for item in items if HERE in item.path.resolve().parents]
    for item in ours:
        item.add_marker(pytest.mark.cluster)
    if ours:
        ours[0].add_marker(pytest.mark.timeout(COLD_START_TIMEOUT))


@pytest.fixture(scope="session")
def cluster() -> Iterator[str]:
    """Starts the control plane (idempotent) and yields the admin kubeconfig path."""
    for tool in ("openssl", "curl", "jq", "helm"):
        require_tool(tool)
    if not all((BIN_DIR / name).exists() for name in CLUSTER_BINARIES):
        require_tool("go")  # the first `up` builds them from the Go module proxy
    with in_use(CLUSTER_SCRIPT, (CLUSTER,)) as kubeconfig:
        os.environ["KUBECONFIG"] = kubeconfig
        yield kubeconfig


@pytest.fixture
def namespace(cluster: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace that enforces Pod Security "restricted"; deleted afterwards."""
    name = create_namespace(request.node.originalname.replace("_", "-"))
    yield name
    delete_namespace(name)
