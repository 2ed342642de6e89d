"""rmodelpack deploy drives the real helm: offline render, and clear errors without a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import EXAMPLES_DIR, require_tool, run_cli

from rmodelpack.deploy import helm_command

BOSTON = EXAMPLES_DIR / "boston-rf"
ENV = {"BOSTON_SCORER_PASSWORD": "deploy-test-secret"}


def rmodelpack(*args: str, env: dict | None = None):
    return run_cli(*args, env={**ENV, **(env or {})})


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    require_tool("helm")
    if not (BOSTON / "model.rds").exists():
        pytest.skip("examples/boston-rf/model.rds is not trained (run: bash ci/setup.sh)")
    out = tmp_path_factory.mktemp("deploy") / "out"
    result = rmodelpack("render", str(BOSTON), "-o", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_dry_run_renders_the_chart_with_the_rendered_values(rendered: Path):
    result = rmodelpack("deploy", str(rendered / "values.yaml"), "--dry-run", "-n", "models")
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    values = yaml.safe_load((rendered / "values.yaml").read_text())
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert len(deployments) == 1
    container = deployments[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"{values['image']['repository']}:{values['image']['tag']}"
    assert all(d["metadata"].get("namespace", "models") == "models" for d in docs)
    assert "deploy-test-secret" not in result.stdout


def test_deploy_from_a_manifest_renders_first(rendered: Path, tmp_path: Path):
    result = rmodelpack("deploy", str(BOSTON), "-o", str(tmp_path / "out"), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "values.yaml").is_file()
    assert "kind: HorizontalPodAutoscaler" in result.stdout


def test_no_cluster_is_a_clear_exit_1(rendered: Path, tmp_path: Path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "nowhere",
                "clusters": [{"name": "nowhere", "cluster": {"server": "https://127.0.0.1:9"}}],
                "contexts": [{"name": "nowhere", "context": {"cluster": "nowhere", "user": "u"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
            }
        )
    )
    result = rmodelpack(
        "deploy",
        str(rendered / "values.yaml"),
        "--timeout",
        "20s",
        env={"KUBECONFIG": str(kubeconfig)},
    )
    assert result.returncode == 1
    assert "fix: no Kubernetes cluster answers" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("tool", "flag"), [("helm", "--rollback-on-failure"), ("helm3", "--atomic")]
)
def test_upgrade_is_atomic_and_waits_with_either_helm_major(tool: str, flag: str, tmp_path: Path):
    helm = require_tool(tool)
    command = helm_command(
        helm,
        release="r",
        values=tmp_path / "v.yaml",
        chart="chart",
        namespace="ns",
        dry_run=None,
        timeout="5m",
    )
    assert flag in command and "--wait" in command
    assert command[1:4] == ["upgrade", "--install", "r"]
    assert "--create-namespace" in command


def test_extra_values_files_override_the_rendered_ones(rendered: Path, tmp_path: Path):
    extra = tmp_path / "monitoring.yaml"
    extra.write_text("serviceMonitor:\n  enabled: true\n  apiVersion: azmonitoring.coreos.com/v1\n")
    result = rmodelpack("deploy", str(rendered / "values.yaml"), "--dry-run", "-f", str(extra))
    assert result.returncode == 0, result.stderr
    kinds = {(d["apiVersion"], d["kind"]) for d in yaml.safe_load_all(result.stdout) if d}
    assert ("azmonitoring.coreos.com/v1", "ServiceMonitor") in kinds
    missing = rmodelpack("deploy", str(rendered / "values.yaml"), "--dry-run", "-f", "nope.yaml")
    assert missing.returncode == 2
    assert "--values nope.yaml: no such file" in missing.stderr
