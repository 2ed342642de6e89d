"""Fixtures for the real node (ci/node.sh): a kubelet on its own containerd, CNI bridge + portmap.

This package runs only through `bash ci/e2e-node.sh` (which sets RMP_NODE_E2E=1): the node needs
root with cgroup and mount rights, containerd and the CNI plugins, and a kubelet build, so it is
kept out of the default run (`ci/test.sh`) until it has proven reliable in CI.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster.kube import create_namespace, delete_namespace, run
from conftest import REPO_ROOT, require_tool

HERE = Path(__file__).resolve().parent
NODE_SCRIPT = REPO_ROOT / "ci" / "node.sh"
ENABLED = os.environ.get("RMP_NODE_E2E") == "1"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if not ENABLED and collection_path.name.startswith("test_"):
        return True
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.node)


@pytest.fixture(scope="session")
def real_node() -> str:
    """Starts the control plane and the real node (idempotent); returns the kubeconfig path."""
    for tool in ("openssl", "curl", "jq", "helm", "go", "docker", "containerd", "ctr", "Rscript"):
        require_tool(tool)
    run("bash", str(NODE_SCRIPT), "up", timeout=3600)
    exported = run("bash", str(NODE_SCRIPT), "env").stdout.strip()
    kubeconfig = exported.removeprefix("export KUBECONFIG=")
    os.environ["KUBECONFIG"] = kubeconfig
    return kubeconfig


@pytest.fixture(scope="module")
def module_namespace(real_node: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace that enforces Pod Security "restricted", shared by one module's tests."""
    name = create_namespace(request.module.__name__.rsplit(".", 1)[-1].replace("_", "-"))
    yield name
    delete_namespace(name)
