"""The offline control plane is a real one: pinned version, loopback only, admission enforced."""

from __future__ import annotations

import json
import re
from pathlib import Path

from cluster.daemons import inherited_descriptor_problems, recorded_daemons
from cluster.kube import (
    CLUSTER_BINARIES,
    CLUSTER_SCRIPT,
    apply,
    create_namespace,
    delete_namespace,
    kubectl,
    kubectl_json,
    pinned_versions,
    ready_pods,
    run,
)

RESTRICTED_SECURITY = {
    "pod": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
    "container": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
}


def pod(name: str, *, compliant: bool) -> dict:
    container: dict = {"name": "main", "image": "127.0.0.1:5000/models/probe:1.0.0"}
    spec: dict = {"containers": [container], "automountServiceAccountToken": False}
    if compliant:
        spec["securityContext"] = RESTRICTED_SECURITY["pod"]
        container["securityContext"] = RESTRICTED_SECURITY["container"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def middleware(name: str, basic_auth: dict) -> dict:
    return {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "Middleware",
        "metadata": {"name": name},
        "spec": {"basicAuth": basic_auth},
    }


def test_status_reports_every_component_healthy(cluster: str) -> None:
    status = run("bash", str(CLUSTER_SCRIPT), "status")
    for component in CLUSTER_BINARIES:
        assert re.search(rf"^{component}\s+running \(pid \d+\)$", status.stdout, re.M), (
            status.stdout
        )
    assert "FAIL" not in status.stdout


def component_pids() -> dict[str, str]:
    status = run("bash", str(CLUSTER_SCRIPT), "status").stdout
    return dict(re.findall(r"^(\S+)\s+running \(pid (\d+)\)$", status, re.M))


def test_up_is_idempotent_when_healthy(cluster: str) -> None:
    before = component_pids()
    again = run("bash", str(CLUSTER_SCRIPT), "up")
    assert "nothing to do" in again.stdout
    assert component_pids() == before
    assert set(before) == set(CLUSTER_BINARIES)


def test_daemons_run_detached_holding_no_inherited_descriptor(cluster: str) -> None:
    state = Path(cluster).parent
    daemons = recorded_daemons(state)
    assert set(daemons) == set(CLUSTER_BINARIES)
    problems = [
        problem
        for name, pid in daemons.items()
        for problem in inherited_descriptor_problems(name, pid, state)
    ]
    assert not problems, "\n".join(problems)


def test_server_and_kubectl_report_the_pinned_version(cluster: str) -> None:
    expected = pinned_versions()["KUBERNETES_VERSION"]
    versions = json.loads(kubectl("version", "-o", "json").stdout)
    assert versions["serverVersion"]["gitVersion"] == expected
    assert versions["clientVersion"]["gitVersion"] == expected
    major, minor = expected.removeprefix("v").split(".")[:2]
    assert (versions["serverVersion"]["major"], versions["serverVersion"]["minor"]) == (
        major,
        minor,
    )


def test_every_component_listens_on_loopback_only(cluster: str) -> None:
    pids = component_pids().values()
    sockets = run("ss", "-Hltnp").stdout.splitlines()
    ours = [line for line in sockets if any(f"pid={pid}," in line for pid in pids)]
    endpoints = {line.split()[3] for line in ours}
    assert {"127.0.0.1:61443", "127.0.0.1:62379"} <= endpoints  # apiserver, etcd clients
    assert {endpoint.rsplit(":", 1)[0] for endpoint in endpoints} == {"127.0.0.1"}, ours


def test_fake_nodes_are_ready_and_the_gpu_pool_is_tainted(cluster: str) -> None:
    # type=kwok: a real node from testbed/node.sh (stage 2) may be up beside them
    fake = kubectl_json("get", "nodes", "-l", "type=kwok")["items"]
    nodes = {node["metadata"]["name"]: node for node in fake}
    assert set(nodes) == {"kwok-node-0", "kwok-gpu-node-0"}
    for node in nodes.values():
        conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
        assert conditions["Ready"] == "True"
        assert not node["spec"].get("unschedulable", False)
    gpu = nodes["kwok-gpu-node-0"]
    assert gpu["status"]["allocatable"]["nvidia.com/gpu"] == "4"
    assert gpu["metadata"]["labels"]["kubernetes.azure.com/accelerator"] == "nvidia"
    assert gpu["spec"]["taints"] == [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]
    assert not nodes["kwok-node-0"]["spec"].get("taints")


def test_restricted_namespace_rejects_a_non_compliant_pod(namespace: str) -> None:
    rejected = apply(pod("default-security", compliant=False), "-n", namespace, check=False)
    assert rejected.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in rejected.stderr
    for violation in ("allowPrivilegeEscalation != false", "runAsNonRoot != true"):
        assert violation in rejected.stderr
    assert kubectl("get", "pod", "default-security", "-n", namespace, check=False).returncode


def test_the_same_pod_is_admitted_without_the_enforce_label(cluster: str) -> None:
    """The control for the test above: the label, not the server's config, does the rejecting."""
    unlabelled = create_namespace("psa-control", enforce="privileged")
    try:
        apply(pod("default-security", compliant=False), "-n", unlabelled)
    finally:
        delete_namespace(unlabelled)


def test_restricted_namespace_admits_a_compliant_pod_that_kwok_makes_ready(namespace: str) -> None:
    manifest = pod("compliant", compliant=True)
    manifest["metadata"]["labels"] = {"probe": "compliant"}
    apply(manifest, "-n", namespace)
    kubectl("wait", "--for=condition=Ready", "pod/compliant", "-n", namespace, "--timeout=60s")
    assert ready_pods(namespace, "probe=compliant") == ["compliant"]
    assert kubectl_json("get", "pod", "compliant", "-n", namespace)["spec"]["nodeName"] == (
        "kwok-node-0"
    )


def test_crds_are_established(cluster: str) -> None:
    names = {crd["metadata"]["name"] for crd in kubectl_json("get", "crd")["items"]}
    assert {"middlewares.traefik.io", "ingressroutes.traefik.io"} <= names
    assert {"certificates.cert-manager.io", "clusterissuers.cert-manager.io"} <= names


def test_middleware_schema_rejects_a_wrong_type(namespace: str) -> None:
    bad = middleware("bad-type", {"secret": "auth", "removeHeader": "yes please"})
    rejected = apply(bad, "-n", namespace, check=False)
    assert rejected.returncode != 0
    assert "spec.basicAuth.removeHeader" in rejected.stderr
    assert "boolean" in rejected.stderr


def test_middleware_schema_rejects_an_unknown_field(namespace: str) -> None:
    bad = middleware("bad-field", {"secret": "auth", "passwordz": "x"})
    rejected = apply(bad, "-n", namespace, "--validate=strict", check=False)
    assert rejected.returncode != 0
    assert 'unknown field "spec.basicAuth.passwordz"' in rejected.stderr


def test_middleware_schema_accepts_a_valid_middleware(namespace: str) -> None:
    apply(middleware("good", {"secret": "auth", "removeHeader": True}), "-n", namespace)
    stored = kubectl_json("get", "middleware.traefik.io", "good", "-n", namespace)
    assert stored["spec"]["basicAuth"] == {"secret": "auth", "removeHeader": True}
