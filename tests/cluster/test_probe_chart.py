"""Helm against the offline control plane, with a small chart that ships every kind the
rmodelpack chart does (tests/cluster/charts/probe): server-side validation, a real install
with --wait, upgrade, rollback, uninstall, hooks, kubeVersion checks and `helm test`."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from cluster.kube import (
    PROBE_CHART,
    eventually,
    helm,
    kubectl,
    kubectl_json,
    pinned_versions,
    release_history,
    release_status,
    run,
    server_dry_run,
    wait_for_ready_pods,
)

RELEASE = "probe"
SELECTOR = f"app.kubernetes.io/instance={RELEASE}"
WAIT = ("--wait", "--timeout", "120s")
SHIPPED_KINDS = {
    "Deployment",
    "Service",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "Middleware",
    "IngressRoute",
    "Certificate",
    "Secret",
}


def template_annotation(namespace: str) -> str:
    deployment = kubectl_json("get", "deployment", RELEASE, "-n", namespace)
    return deployment["spec"]["template"]["metadata"]["annotations"]["probe/revision-note"]


def pod_owners(namespace: str) -> set[str]:
    pods = kubectl_json("get", "pods", "-n", namespace, "-l", SELECTOR)["items"]
    return {owner["kind"] for pod in pods for owner in pod["metadata"].get("ownerReferences", [])}


def exists(kind: str, name: str, namespace: str) -> bool:
    return kubectl("get", kind, name, "-n", namespace, check=False).returncode == 0


def test_api_server_accepts_every_rendered_object(namespace: str) -> None:
    rendered = helm("template", RELEASE, str(PROBE_CHART), "-n", namespace).stdout
    kinds = {doc["kind"] for doc in yaml.safe_load_all(rendered) if doc}
    assert kinds >= SHIPPED_KINDS | {"Job", "Pod"}
    accepted = server_dry_run(namespace, rendered)
    assert accepted == rendered.count("\nkind: ")


def test_helm_dry_run_server_creates_nothing(namespace: str) -> None:
    helm("install", RELEASE, str(PROBE_CHART), "-n", namespace, "--dry-run=server")
    assert helm("list", "-n", namespace, "-q").stdout.strip() == ""
    assert not exists("deployment", RELEASE, namespace)


def test_helm_dry_run_server_does_not_validate_objects(namespace: str, tmp_path: Path) -> None:
    """Characterises helm: --dry-run=server only lets templates look up cluster state; it never
    sends the objects to the API server, so an invalid object passes. Server-side validation
    needs `kubectl apply --dry-run=server` (as test_api_server_accepts_every_rendered_object)."""
    chart = tmp_path / "probe"
    shutil.copytree(PROBE_CHART, chart)
    traefik = chart / "templates" / "traefik.yaml"
    traefik.write_text(traefik.read_text().replace("removeHeader: true", 'removeHeader: "no"'))
    helm("install", RELEASE, str(chart), "-n", namespace, "--dry-run=server")
    rendered = helm("template", RELEASE, str(chart), "-n", namespace).stdout
    rejected = kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=rendered, check=False
    )
    assert rejected.returncode != 0
    assert "spec.basicAuth.removeHeader" in rejected.stderr


def test_install_upgrade_rollback_uninstall(namespace: str) -> None:
    helm("install", RELEASE, str(PROBE_CHART), "-n", namespace, *WAIT)
    assert release_status(RELEASE, namespace)["info"]["status"] == "deployed"
    # The pre-install hook Job ran to completion (kwok completes Job pods).
    hook = kubectl_json("get", "job", f"{RELEASE}-hook", "-n", namespace)
    assert hook["status"].get("succeeded") == 1
    for kind in (
        "hpa",
        "pdb",
        "networkpolicy",
        "middleware.traefik.io",
        "ingressroute.traefik.io",
        "certificate.cert-manager.io",
    ):
        assert exists(kind, RELEASE if "middleware" not in kind else f"{RELEASE}-auth", namespace)
    # The HPA controller raises the Deployment to minReplicas: 2 Ready (fake) pods.
    wait_for_ready_pods(namespace, SELECTOR, 2)

    helm(
        "upgrade",
        RELEASE,
        str(PROBE_CHART),
        "-n",
        namespace,
        *WAIT,
        "--set",
        "revisionNote=second",
        "--set",
        "autoscaling.enabled=false",
        "--set",
        "replicaCount=3",
    )
    assert release_status(RELEASE, namespace)["version"] == 2
    assert template_annotation(namespace) == "second"
    assert not exists("hpa", RELEASE, namespace)
    wait_for_ready_pods(namespace, SELECTOR, 3)

    helm("rollback", RELEASE, "1", "-n", namespace, *WAIT)
    history = release_history(RELEASE, namespace)
    assert [(entry["revision"], entry["status"]) for entry in history] == [
        (1, "superseded"),
        (2, "superseded"),
        (3, "deployed"),
    ]
    assert template_annotation(namespace) == "first"
    assert exists("hpa", RELEASE, namespace)

    helm("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "120s")
    assert helm("list", "-n", namespace, "-q").stdout.strip() == ""
    assert not exists("deployment", RELEASE, namespace)
    # Only the hook Job's completed pod may stay: helm keeps hook resources after uninstall.
    assert eventually(lambda: pod_owners(namespace) <= {"Job"}), pod_owners(namespace)


def test_kube_version_constraint_is_checked_against_the_server(
    namespace: str, tmp_path: Path
) -> None:
    chart = tmp_path / "probe"
    shutil.copytree(PROBE_CHART, chart)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    meta["kubeVersion"] = "<1.35.0-0"
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta))
    refused = helm("install", RELEASE, str(chart), "-n", namespace, "--dry-run=server", check=False)
    assert refused.returncode != 0
    expected = pinned_versions()["KUBERNETES_VERSION"]
    assert f"incompatible with Kubernetes {expected}" in refused.stderr


def test_helm_test_pod_is_admitted_but_kwok_never_completes_it(namespace: str) -> None:
    """Characterises the fake node: kwok's default stages complete only Job-owned pods, so a
    bare `helm test` Pod stays Running and `helm test` times out. The hook itself is admitted
    by Pod Security "restricted" and scheduled; nothing executes its command."""
    helm("install", RELEASE, str(PROBE_CHART), "-n", namespace, *WAIT)
    outcome = run("helm", "test", RELEASE, "-n", namespace, "--timeout", "15s", check=False)
    assert outcome.returncode != 0
    test_pod = kubectl_json("get", "pod", f"{RELEASE}-test", "-n", namespace)
    assert test_pod["spec"]["nodeName"] == "kwok-node-0"
    assert test_pod["status"]["phase"] == "Running"
