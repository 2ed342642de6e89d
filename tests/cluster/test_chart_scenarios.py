"""The rmodelpack chart on a real API server, for every example's rendered values and every
chart/ci/*-values.yaml scenario: server-side validation of every object, `helm install
--dry-run=server`, then `rmodelpack deploy` (upgrade --install --wait), upgrade, rollback and
uninstall in a namespace that enforces Pod Security "restricted"."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cluster.kube import (
    REPO_ROOT,
    apply,
    eventually,
    helm,
    kubectl,
    kubectl_json,
    ready_pods,
    release_history,
    release_status,
    run,
    server_dry_run,
)

CHART = REPO_ROOT / "chart"
WAIT = ("--wait", "--timeout", "180s")
REVISION_ANNOTATION = "rmodelpack.dev/test-revision"


def scenarios() -> list[pytest.param]:
    chart_ci = sorted((CHART / "ci").glob("*-values.yaml"))
    examples = sorted((REPO_ROOT / "examples").glob("*/rmodel.yaml"))
    return [
        pytest.param(path, id=f"ci-{path.name.removesuffix('-values.yaml')}") for path in chart_ci
    ] + [pytest.param(path, id=f"example-{path.parent.name}") for path in examples]


def password_env(manifest: Path) -> dict[str, str]:
    """Test passwords for every users[].password_env the manifest names."""
    users = (
        (yaml.safe_load(manifest.read_text()).get("service") or {}).get("auth", {}).get("users", [])
    )
    return {user["password_env"]: secrets.token_hex(12) for user in users if "password_env" in user}


def values_for(scenario: Path, tmp_path: Path) -> Path:
    if scenario.name != "rmodel.yaml":
        return scenario
    out = tmp_path / "rendered"
    subprocess.run(
        [sys.executable, "-m", "rmodelpack", "render", str(scenario), "-o", str(out)],
        env={**os.environ, **password_env(scenario)},
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return out / "values.yaml"


def rendered_objects(release: str, namespace: str, values: Path) -> list[dict]:
    manifest = helm("template", release, str(CHART), "-n", namespace, "-f", str(values)).stdout
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


def pod_specs(objects: list[dict]) -> list[dict]:
    specs = [obj["spec"]["template"]["spec"] for obj in objects if obj["kind"] == "Deployment"]
    return specs + [obj["spec"] for obj in objects if obj["kind"] == "Pod"]


def create_prerequisites(objects: list[dict], namespace: str) -> None:
    """What a scenario expects the cluster to have already: PriorityClasses and bound PVCs."""
    for spec in pod_specs(objects):
        if name := spec.get("priorityClassName"):
            apply(
                {
                    "apiVersion": "scheduling.k8s.io/v1",
                    "kind": "PriorityClass",
                    "metadata": {"name": name},
                    "value": 1000,
                }
            )
        for volume in spec.get("volumes", []):
            if claim := volume.get("persistentVolumeClaim", {}).get("claimName"):
                create_bound_claim(claim, namespace)


def create_bound_claim(claim: str, namespace: str) -> None:
    volume = f"{namespace}-{claim}"
    apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": volume},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadOnlyMany"],
                "storageClassName": "",
                "hostPath": {"path": f"/nonexistent/{volume}"},
                "claimRef": {"namespace": namespace, "name": claim},
            },
        }
    )
    apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": namespace},
            "spec": {
                "accessModes": ["ReadOnlyMany"],
                "storageClassName": "",
                "volumeName": volume,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
    )
    kubectl(
        "wait",
        "--for=jsonpath={.status.phase}=Bound",
        f"pvc/{claim}",
        "-n",
        namespace,
        "--timeout=60s",
    )


def is_hook(obj: dict) -> bool:
    return "helm.sh/hook" in (obj["metadata"].get("annotations") or {})


def deployment(objects: list[dict]) -> dict:
    return next(obj for obj in objects if obj["kind"] == "Deployment")


def pod_annotations(name: str, namespace: str) -> dict:
    live = kubectl_json("get", "deployment", name, "-n", namespace)
    return live["spec"]["template"]["metadata"].get("annotations", {})


def all_pods_ready(name: str, namespace: str) -> bool:
    live = kubectl_json("get", "deployment", name, "-n", namespace)
    wanted = live["spec"]["replicas"]
    selector = ",".join(f"{k}={v}" for k, v in live["spec"]["selector"]["matchLabels"].items())
    return wanted >= 1 and len(ready_pods(namespace, selector)) == wanted


@pytest.fixture
def chart_present() -> None:
    if not (CHART / "Chart.yaml").is_file():
        pytest.fail("chart/Chart.yaml is missing")


@pytest.mark.parametrize("scenario", scenarios())
def test_api_server_accepts_every_object(
    scenario: Path, namespace: str, tmp_path: Path, chart_present: None
) -> None:
    values = values_for(scenario, tmp_path)
    objects = rendered_objects("rmp", namespace, values)
    kinds = {obj["kind"] for obj in objects}
    assert {"Deployment", "Service", "NetworkPolicy", "PodDisruptionBudget"} <= kinds
    create_prerequisites(objects, namespace)
    accepted = server_dry_run(namespace, yaml.safe_dump_all(objects))
    assert accepted == len(objects)
    helm("install", "rmp", str(CHART), "-n", namespace, "-f", str(values), "--dry-run=server")
    assert helm("list", "-n", namespace, "-q").stdout.strip() == ""


@pytest.mark.parametrize("scenario", scenarios())
def test_deploy_upgrade_rollback_uninstall(
    scenario: Path, namespace: str, tmp_path: Path, chart_present: None
) -> None:
    release = "rmp"
    values = values_for(scenario, tmp_path)
    objects = rendered_objects(release, namespace, values)
    create_prerequisites(objects, namespace)
    name = deployment(objects)["metadata"]["name"]

    run(
        sys.executable,
        "-m",
        "rmodelpack",
        "deploy",
        str(values),
        "--release",
        release,
        "-n",
        namespace,
        "--timeout",
        "180s",
    )
    assert release_status(release, namespace)["info"]["status"] == "deployed"
    assert eventually(lambda: all_pods_ready(name, namespace))
    # Every non-hook object the chart renders (HPA, PDB, NetworkPolicy, CRs...) is live.
    installed = [obj for obj in objects if not is_hook(obj)]
    live = kubectl(
        "get", "-n", namespace, "-f", "-", "-o", "name", stdin=yaml.safe_dump_all(installed)
    ).stdout.split()
    assert len(live) == len(installed)

    helm(
        "upgrade",
        release,
        str(CHART),
        "-n",
        namespace,
        "-f",
        str(values),
        *WAIT,
        "--set-string",
        f"podAnnotations.{REVISION_ANNOTATION.replace('.', chr(92) + '.')}=2",
    )
    assert release_status(release, namespace)["version"] == 2
    assert pod_annotations(name, namespace).get(REVISION_ANNOTATION) == "2"
    assert eventually(lambda: all_pods_ready(name, namespace))

    helm("rollback", release, "1", "-n", namespace, *WAIT)
    assert [entry["status"] for entry in release_history(release, namespace)] == [
        "superseded",
        "superseded",
        "deployed",
    ]
    assert REVISION_ANNOTATION not in pod_annotations(name, namespace)

    helm("uninstall", release, "-n", namespace, "--wait", "--timeout", "120s")
    assert helm("list", "-n", namespace, "-q").stdout.strip() == ""
    assert kubectl("get", "deployment", name, "-n", namespace, check=False).returncode != 0
