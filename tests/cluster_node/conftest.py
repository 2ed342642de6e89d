"""Fixtures for the real node (testbed/node.sh): a kubelet on its own containerd, CNI bridge +
portmap, kube-proxy, CoreDNS, metrics-server, the CA-only cert-manager controller, and Traefik
as the ingress controller.

Part of the default run (`bash ci/test.sh`). From a cold machine the `real_node` fixture builds
what is missing (`node.sh up` runs `build`), starts the control plane and the node, and after
this package takes down what it started (tests/cluster/lifecycle.py). The node needs root with
cgroup and mount rights, containerd, the CNI plugins and docker (ci/setup.sh installs them).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster.kube import create_namespace, delete_namespace, run
from cluster.lifecycle import CLUSTER, NODE, in_use
from conftest import REPO_ROOT, require_tool

HERE = Path(__file__).resolve().parent
NODE_SCRIPT = REPO_ROOT / "testbed" / "node.sh"
# From the basics to the longest proofs, so a broken node fails fast.
MODULE_ORDER = (
    "test_real_node",
    "test_serve",
    "test_helm_test",
    "test_ingress",
    "test_cert_manager",
    "test_autoscaling",
    "test_rollout",
)
# The first test also pays for `testbed/node.sh up` on a machine where nothing is built yet.
COLD_START_TIMEOUT = 3600


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    ours = [i for i, item in enumerate(items) if HERE in item.path.resolve().parents]
    if not ours:
        return
    ranked = sorted(
        (items[i] for i in ours),
        key=lambda item: (
            MODULE_ORDER.index(item.path.stem)
            if item.path.stem in MODULE_ORDER
            else len(MODULE_ORDER)
        ),
    )  # stable: keeps each module's own order
    for i, item in zip(ours, ranked, strict=True):
        item.add_marker(pytest.mark.node)
        items[i] = item
    ranked[0].add_marker(pytest.mark.timeout(COLD_START_TIMEOUT))


@pytest.fixture(scope="package")
def real_node() -> Iterator[str]:
    """Starts the control plane and the real node (idempotent); yields the kubeconfig path."""
    for tool in ("openssl", "curl", "jq", "helm", "go", "docker", "containerd", "ctr", "Rscript"):
        require_tool(tool)
    with in_use(NODE_SCRIPT, (NODE, CLUSTER)) as kubeconfig:
        os.environ["KUBECONFIG"] = kubeconfig
        yield kubeconfig


@pytest.fixture(scope="package")
def traefik(real_node: str) -> str:
    """Traefik on the node (`testbed/node.sh ingress`, idempotent); `node.sh down` removes it."""
    run("bash", str(NODE_SCRIPT), "ingress", timeout=1800)
    return "rmp-ingress"


@pytest.fixture(scope="module")
def module_namespace(real_node: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace that enforces Pod Security "restricted", shared by one module's tests."""
    name = create_namespace(request.module.__name__.rsplit(".", 1)[-1].replace("_", "-"))
    yield name
    delete_namespace(name)
