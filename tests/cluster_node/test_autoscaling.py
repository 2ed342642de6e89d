"""The chart's HorizontalPodAutoscaler really scales boston-rf on the real node: metrics-server
(built from sigs.k8s.io/metrics-server, scraping the kubelet on 127.0.0.1) reports the pod's CPU;
under bounded load sent through Traefik (TLS, basic auth) the HPA scales the Deployment from 1 to
2 replicas, Traefik balances across both (each pod's own access log shows requests we tagged),
and after the load it scales back to 1.

Only this test's values make it quick: one to two replicas, a low CPU target, no stabilization
window. The chart's defaults (2-10 replicas, 5 minutes' scale-down stabilization) stay as they are.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster.kube import eventually, helm, kubectl, kubectl_json, ready_pods

from cluster_node.boston import create_tls_secret, install, predict_body
from cluster_node.traffic import Traffic, wait_for_route

RELEASE = "boston"
SELECTOR = f"app.kubernetes.io/instance={RELEASE}"
QUICK_SCALING = {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                 "policies": [{"type": "Pods", "value": 1, "periodSeconds": 5}]}  # fmt: skip
# Traefik checks the bcrypt password of every request, which costs it more CPU than R spends on
# 5 rows; 500 rows a request put the load on the model's pod.
HEAVY_BODY = {"data": predict_body()["data"] * 100}
# Traefik routes to a new pod only a few seconds after it turns Ready (the EndpointSlice update,
# then its provider's throttle), and a round of small requests can end before that. So the test
# sends rounds until one reaches both pods, and fails when none of BALANCE_ROUNDS rounds does.
ROUND_REQUESTS = 60
BALANCE_ROUNDS = 5
TEST_AUTOSCALING = {
    "autoscaling": {
        "enabled": True,
        "minReplicas": 1,
        "maxReplicas": 2,
        "targetCPUUtilizationPercentage": 50,  # of the node overrides' 100m request
        "behavior": {"scaleUp": QUICK_SCALING, "scaleDown": QUICK_SCALING},
    }
}


@pytest.fixture(scope="module")
def release(
    traefik: str, module_namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, str]]:
    """(CA certificate, host) of boston-rf behind Traefik, with the HPA on at 1-2 replicas."""
    workdir = tmp_path_factory.mktemp("boston-rf-hpa")
    install(RELEASE, module_namespace, workdir, TEST_AUTOSCALING)
    ca_crt = create_tls_secret(module_namespace, workdir)
    host = wait_for_route(ca_crt, module_namespace)
    yield ca_crt, host
    helm("uninstall", RELEASE, "-n", module_namespace, "--wait", "--timeout", "120s", check=False)


def hpa(namespace: str) -> dict:
    return kubectl_json("get", "hpa", "-n", namespace, "-l", SELECTOR)["items"][0]


def cpu_metric_seen(namespace: str) -> bool:
    """The HPA reads a CPU utilization, so metrics-server serves this pod's metrics."""
    current = hpa(namespace).get("status", {}).get("currentMetrics") or []
    return any(m.get("resource", {}).get("current", {}).get("averageUtilization") is not None
               for m in current)  # fmt: skip


def tagged_requests_per_pod(namespace: str, pods: list[str], tag: str) -> dict[str, int]:
    """How many requests with X-Request-Id TAG-* each pod's own nginx access log shows."""
    counts = {}
    for pod in pods:
        log = kubectl("logs", "-n", namespace, pod, "--tail=5000").stdout
        ids = [json.loads(line).get("request_id", "") for line in log.splitlines()
               if line.startswith("{") and '"request_id"' in line]  # fmt: skip
        counts[pod] = sum(1 for request_id in ids if request_id.startswith(f"{tag}-"))
    return counts


def every_pod_answered(namespace: str, pods: list[str], tag: str) -> dict[str, int] | None:
    counts = tagged_requests_per_pod(namespace, pods, tag)
    return counts if all(counts.values()) else None


def tagged_round(ca_crt: Path, host: str, namespace: str, pods: list[str]) -> dict[str, int]:
    """Sends ROUND_REQUESTS requests with a fresh X-Request-Id tag through Traefik, all of which
    must succeed, and returns how many of them each pod's own access log shows."""
    tag = f"balance-{uuid.uuid4().hex[:8]}"
    with Traffic(ca_crt, host, max_requests=ROUND_REQUESTS, max_seconds=60, request_ids=tag) as t:
        t.join()
    assert not t.failures(), t.failures()[:5]
    # nginx flushes its access log every second
    counts = eventually(lambda: every_pod_answered(namespace, pods, tag), timeout=10)
    return counts or tagged_requests_per_pod(namespace, pods, tag)


def back_to_one_pod(namespace: str) -> bool:
    pods = kubectl_json("get", "pods", "-n", namespace, "-l", SELECTOR)["items"]
    return hpa(namespace)["status"].get("desiredReplicas") == 1 and len(pods) == 1


def test_hpa_scales_up_under_load_balances_and_scales_back_down(
    module_namespace: str, release: tuple[Path, str]
) -> None:
    ca_crt, host = release
    assert hpa(module_namespace)["spec"]["minReplicas"] == 1
    assert eventually(lambda: cpu_metric_seen(module_namespace), timeout=120), hpa(
        module_namespace
    ).get("status")
    assert len(ready_pods(module_namespace, SELECTOR)) == 1

    load_limits = {"max_requests": 20000, "max_seconds": 300}
    with Traffic(ca_crt, host, threads=3, body=HEAVY_BODY, **load_limits) as load:
        scaled_up = eventually(
            lambda: len(ready_pods(module_namespace, SELECTOR)) == 2, timeout=240, interval=2
        )
        statuses = Counter(answer.status for answer in load.answers)
        assert scaled_up, f"no second pod under load ({statuses}): {hpa(module_namespace)}"
        pods = ready_pods(module_namespace, SELECTOR)
        rounds = [tagged_round(ca_crt, host, module_namespace, pods)]
        while not all(rounds[-1].values()) and len(rounds) < BALANCE_ROUNDS:
            rounds.append(tagged_round(ca_crt, host, module_namespace, pods))
    assert all(rounds[-1].values()), f"not both pods answered, round by round: {rounds}"
    assert sum(rounds[-1].values()) <= ROUND_REQUESTS
    assert not load.failures(), (len(load.failures()), load.failures()[:5])
    assert len(load.answers) > 0

    scaled_down = eventually(lambda: back_to_one_pod(module_namespace), timeout=240, interval=3)
    assert scaled_down, f"did not scale back to 1: {hpa(module_namespace).get('status')}"
