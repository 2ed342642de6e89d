"""The real node: a kubelet (same v1.35.8 build) on containerd 1.6, registered beside the kwok
nodes, tainted so only pods that tolerate it run there, serving only on 127.0.0.1."""

from __future__ import annotations

import fcntl
from functools import partial
from pathlib import Path

from cluster.daemons import inherited_descriptor_problems, recorded_daemons
from cluster.kube import apply, eventually, kubectl_json, pinned_versions, run
from cluster.lifecycle import CLUSTER, NODE

from cluster_node.host import listening_pids

REAL_NODE = "rmp-node-0"
TAINT_KEY = "rmodelpack.io/real-node"
PAUSE_IMAGE = "rmodelpack.local/pause:3.10"
POD_SUBNET = "10.88.0.0/16"
NODE_DAEMONS = {"containerd", "kubelet", "kube-proxy", "coredns", "metrics-server", "cert-manager"}
BRIDGE = "rmp-cni0"
BRIDGE_IP = "10.88.0.1"


def node_condition(node: dict, kind: str) -> str:
    return next(c["status"] for c in node["status"]["conditions"] if c["type"] == kind)


def test_real_node_is_ready_with_the_pinned_kubelet_on_containerd(real_node: str) -> None:
    node = kubectl_json("get", "node", REAL_NODE)
    info = node["status"]["nodeInfo"]
    assert node_condition(node, "Ready") == "True"
    assert info["kubeletVersion"] == pinned_versions()["KUBERNETES_VERSION"]
    assert info["containerRuntimeVersion"].startswith("containerd://1.6.")
    assert node["status"]["addresses"] == [{"type": "InternalIP", "address": "127.0.0.1"}]


def test_real_node_is_tainted_and_labelled(real_node: str) -> None:
    node = kubectl_json("get", "node", REAL_NODE)
    assert {"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"} in node["spec"]["taints"]
    assert node["metadata"]["labels"][TAINT_KEY] == "true"
    # The external-cloud-provider bootstrap taint is lifted by testbed/node.sh.
    keys = {taint["key"] for taint in node["spec"]["taints"]}
    assert "node.cloudprovider.kubernetes.io/uninitialized" not in keys


def test_kubelet_and_node_containerd_listen_on_loopback_only(real_node: str) -> None:
    state = Path(real_node).parent.parent / "node" / "run"
    kubelet_pid = (state / "kubelet.pid").read_text().strip()
    containerd_pid = (state / "containerd.pid").read_text().strip()
    kubelet = listening_pids("kubelet")[kubelet_pid]
    containerd = listening_pids("containerd").get(containerd_pid, set())
    assert kubelet == {"127.0.0.1:61250", "127.0.0.1:61248"}
    # containerd's CRI streaming server (port-forward) on a random loopback port.
    assert all(address.startswith("127.0.0.1:") for address in containerd)


def test_kube_proxy_and_coredns_listen_on_loopback_or_the_bridge_only(real_node: str) -> None:
    """kube-proxy's health and metrics on 127.0.0.1; CoreDNS answers the pods on the bridge's
    own address (port 53) and serves its health and readiness on 127.0.0.1."""
    state = Path(real_node).parent.parent / "node" / "run"
    proxy_pid = (state / "kube-proxy.pid").read_text().strip()
    dns_pid = (state / "coredns.pid").read_text().strip()
    assert listening_pids("kube-proxy")[proxy_pid] == {"127.0.0.1:61256", "127.0.0.1:61249"}
    assert listening_pids("coredns")[dns_pid] == {
        f"{BRIDGE_IP}:53",
        "127.0.0.1:61281",
        "127.0.0.1:61282",
    }


def test_our_only_filter_rule_accepts_pod_traffic_within_the_bridge(real_node: str) -> None:
    """Docker's FORWARD policy DROP stays; the one rule node.sh adds lets through only frames
    that enter and leave the node's own bridge (pod to pod, a Service IP to a pod)."""
    forward = run("iptables", "-S", "FORWARD").stdout.splitlines()
    assert "-P FORWARD DROP" in forward
    ours = [rule for rule in forward if "rmodelpack" in rule]
    assert ours == [
        f'-A FORWARD -i {BRIDGE} -o {BRIDGE} -m comment --comment "rmodelpack test node: pod to '
        f'pod on {BRIDGE}" -j ACCEPT'
    ]


def test_node_and_cluster_daemons_hold_no_inherited_descriptor(real_node: str) -> None:
    """`node.sh up` runs `cluster.sh up` while holding the node lock: no daemon of either may
    keep that lock, the cluster's, or a pipe of whoever ran the scripts."""
    problems = []
    for stack, expected in ((NODE, NODE_DAEMONS), (CLUSTER, None)):
        daemons = recorded_daemons(stack.state)
        assert expected is None or set(daemons) == expected
        for name, pid in daemons.items():
            problems += inherited_descriptor_problems(name, pid, stack.state)
    assert not problems, "\n".join(problems)


def lock_is_free(path: Path) -> bool:
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def test_scripts_locks_are_free_once_up_returns(real_node: str) -> None:
    """The symptom of issue 13: a daemon holding node.lock made every later `node.sh up` wait."""
    for lock in (NODE.state.with_suffix(".lock"), CLUSTER.state.with_suffix(".lock")):
        assert eventually(partial(lock_is_free, lock), timeout=60), f"{lock} is still held"
    again = run("bash", str(NODE.script), "up", timeout=120)
    assert "nothing to do" in again.stdout


def test_pod_range_is_fenced_by_an_unreachable_route(real_node: str) -> None:
    """Pod IPs are never routed off the host: without the bridge, packets to the pod range fail
    at once instead of going to the default gateway (node.sh checks this before containerd)."""
    routes = run("ip", "route", "show", "table", "main", "type", "unreachable").stdout
    assert any(
        line.startswith(f"unreachable {POD_SUBNET}") and "metric 4000" in line
        for line in routes.splitlines()
    ), routes
    bridge = run("ip", "-o", "-4", "addr", "show", "dev", "rmp-cni0", check=False).stdout
    assert bridge == "" or "10.88." in bridge


def pod(name: str, tolerate: bool) -> dict:
    spec: dict = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65535,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "pause",
                "image": PAUSE_IMAGE,
                "imagePullPolicy": "Never",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ],
    }
    if tolerate:
        spec["tolerations"] = [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]
        spec["nodeSelector"] = {TAINT_KEY: "true"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def test_pod_without_toleration_stays_on_kwok(module_namespace: str) -> None:
    apply(pod("untolerated", tolerate=False), "-n", module_namespace)
    scheduled = eventually(
        lambda: kubectl_json("get", "pod", "untolerated", "-n", module_namespace)["spec"].get(
            "nodeName"
        ),
        timeout=60,
    )
    assert scheduled == "kwok-node-0"


def test_tolerating_pod_really_runs_on_the_real_node(module_namespace: str) -> None:
    apply(pod("tolerated", tolerate=True), "-n", module_namespace)

    def running() -> dict | None:
        live = kubectl_json("get", "pod", "tolerated", "-n", module_namespace)
        statuses = live["status"].get("containerStatuses") or []
        return live if statuses and "running" in statuses[0]["state"] else None

    live = eventually(running, timeout=120)
    assert live, "the pause pod did not start on the real node"
    assert live["spec"]["nodeName"] == REAL_NODE
    # A real container (kwok sets no containerID) with an address from the CNI bridge's IPAM.
    assert live["status"]["containerStatuses"][0]["containerID"].startswith("containerd://")
    assert live["status"]["podIP"].startswith("10.88.")
