"""Helpers for tests against the offline control plane: kubectl, helm and namespaces."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = REPO_ROOT / "testbed" / "cluster.sh"
VERSIONS_FILE = REPO_ROOT / "testbed" / "k8s" / "versions.env"
PROBE_CHART = Path(__file__).resolve().parent / "charts" / "probe"
T = TypeVar("T")
CLUSTER_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


def run(
    *args: str, check: bool = True, timeout: float = 300, stdin: str | None = None
) -> subprocess.CompletedProcess:
    """Runs a command with text output; on failure the error shows its stdout and stderr."""
    result = subprocess.run(
        args, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def kubectl(
    *args: str, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess:
    return run("kubectl", *args, check=check, stdin=stdin, timeout=120)


def kubectl_json(*args: str) -> dict:
    return json.loads(kubectl(*args, "-o", "json").stdout)


def apply(manifest: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return kubectl("apply", "-f", "-", *args, stdin=json.dumps(manifest), check=check)


def server_dry_run(namespace: str, manifests: str) -> int:
    """kubectl apply --dry-run=server --validate=strict; returns how many objects the API server
    accepted (validation, defaulting, CRD schemas and admission all run; nothing is stored)."""
    applied = kubectl(
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=manifests,
    )
    return applied.stdout.count("(server dry run)")


def helm(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    return run("helm", *args, check=check, timeout=timeout)


def pinned_versions() -> dict[str, str]:
    lines = VERSIONS_FILE.read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return dict(pairs)


def create_namespace(prefix: str, enforce: str = "restricted") -> str:
    name = f"{prefix[:40].strip('-')}-{uuid.uuid4().hex[:8]}"
    labels = {
        "pod-security.kubernetes.io/enforce": enforce,
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
    return name


def delete_namespace(name: str) -> None:
    kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def release_status(release: str, namespace: str) -> dict:
    return json.loads(helm("status", release, "-n", namespace, "-o", "json").stdout)


def release_history(release: str, namespace: str) -> list[dict]:
    return json.loads(helm("history", release, "-n", namespace, "-o", "json").stdout)


def ready_pods(namespace: str, selector: str) -> list[str]:
    pods = kubectl_json("get", "pods", "-n", namespace, "-l", selector)["items"]
    # Phase too: kwok leaves Ready=True on the pods of completed Jobs.
    return [
        pod["metadata"]["name"]
        for pod in pods
        if pod.get("status", {}).get("phase") == "Running"
        and any(
            cond["type"] == "Ready" and cond["status"] == "True"
            for cond in pod.get("status", {}).get("conditions", [])
        )
    ]


def eventually(check: Callable[[], T], timeout: float = 90, interval: float = 1) -> T:
    """Returns check()'s first truthy value, polling for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def wait_for_ready_pods(namespace: str, selector: str, count: int, timeout: float = 90) -> None:
    """Waits until exactly `count` pods matching `selector` are Ready; shows the pods if not."""
    if eventually(lambda: len(ready_pods(namespace, selector)) == count, timeout):
        return
    pods = kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "wide").stdout
    raise AssertionError(f"expected {count} Ready pods for {selector} in {namespace}:\n{pods}")
