"""Zero-downtime rollout, measured on the real node: while a client sends a steady stream through
Traefik (TLS, basic auth), `helm upgrade` moves boston-rf to a new image (the same model rebuilt
as version 1.0.1, loaded into the node's containerd with ctr) and `helm rollback` moves it back.
Every request is answered 200 and every /metadata answer names the old or the new version: the
proof of the chart's readiness probe, preStop sleep, drain and `maxUnavailable: 0`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cluster.kube import eventually, helm, kubectl, kubectl_json, ready_pods

from cluster_node.boston import (
    create_tls_secret,
    example_at_version,
    prepare,
    upgrade,
)
from cluster_node.traffic import Traffic, wait_for_route

RELEASE = "boston"
SELECTOR = f"app.kubernetes.io/instance={RELEASE}"
OLD, NEW = "1.0.0", "1.0.1"
# Two clients, /predict and /metadata in turn: a request in flight at nearly every moment.
STREAM = {"paths": ("/predict", "/metadata"), "threads": 2, "max_requests": 6000}


@dataclass
class Rollout:
    namespace: str
    ca_crt: Path
    host: str
    new_render: Path
    workdir: Path


@pytest.fixture(scope="module")
def rollout(
    traefik: str, module_namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Rollout]:
    """boston-rf 1.0.0 behind Traefik, and the rendered 1.0.1 with its image on the node."""
    workdir = tmp_path_factory.mktemp("boston-rf-rollout")
    new_render = prepare(workdir / NEW, example_at_version(NEW, workdir))
    old_render = prepare(workdir / OLD)
    upgrade(RELEASE, module_namespace, old_render, workdir)
    ca_crt = create_tls_secret(module_namespace, workdir)
    host = wait_for_route(ca_crt, module_namespace)
    yield Rollout(module_namespace, ca_crt, host, new_render, workdir)
    helm("uninstall", RELEASE, "-n", module_namespace, "--wait", "--timeout", "120s", check=False)


def settled_on(stream: Traffic, version: str) -> bool:
    """The last few /metadata answers all come from `version`."""
    last = stream.versions()[-4:]
    return len(last) == 4 and set(last) == {version}


def deployment(namespace: str) -> str:
    return kubectl(
        "get", "deployment", "-n", namespace, "-l", SELECTOR, "-o", "name"
    ).stdout.strip()


def deployment_version(namespace: str) -> str:
    """The version label of the one pod left once the old one has drained and gone."""

    def single_ready_pod() -> dict | None:
        pods = kubectl_json("get", "pods", "-n", namespace, "-l", SELECTOR)["items"]
        return pods[0] if len(pods) == 1 and ready_pods(namespace, SELECTOR) else None

    pod = eventually(single_ready_pod, timeout=120)
    assert pod, kubectl("get", "pods", "-n", namespace, "-o", "wide").stdout
    return pod["metadata"]["labels"]["app.kubernetes.io/version"]


def assert_no_downtime(stream: Traffic, expected: set[str]) -> None:
    failures = stream.failures()
    assert not failures, f"{len(failures)} of {len(stream.answers)} failed: {failures[:5]}"
    assert set(stream.versions()) == expected, set(stream.versions())
    predictions = {tuple(a.predictions) for a in stream.answers if a.predictions is not None}
    assert len(predictions) == 1, "the same model must give the same predictions"


def test_upgrade_then_rollback_under_a_steady_stream_fails_no_request(rollout: Rollout) -> None:
    namespace = rollout.namespace
    assert deployment_version(namespace) == OLD

    with Traffic(rollout.ca_crt, rollout.host, max_seconds=400, **STREAM) as stream:
        assert eventually(lambda: settled_on(stream, OLD), timeout=30)
        upgrade(RELEASE, namespace, rollout.new_render, rollout.workdir)
        kubectl("rollout", "status", deployment(namespace), "-n", namespace, "--timeout=120s")
        assert eventually(lambda: settled_on(stream, NEW), timeout=60), stream.versions()[-10:]
    assert_no_downtime(stream, {OLD, NEW})
    assert deployment_version(namespace) == NEW
    upgraded = len(stream.answers)

    with Traffic(rollout.ca_crt, rollout.host, max_seconds=400, **STREAM) as stream:
        assert eventually(lambda: settled_on(stream, NEW), timeout=30)
        helm("rollback", RELEASE, "1", "-n", namespace, "--wait", "--timeout", "300s",
             timeout=360)  # fmt: skip
        assert eventually(lambda: settled_on(stream, OLD), timeout=60), stream.versions()[-10:]
    assert_no_downtime(stream, {OLD, NEW})
    assert deployment_version(namespace) == OLD
    print(f"rollout: {upgraded} requests during upgrade, {len(stream.answers)} during rollback")
