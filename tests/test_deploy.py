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
    assert "nope.yaml: no such file (option: -f/--values)" in missing.stderr


EVERY_OPTION = {
    "runtime": {
        "workers": 3,
        "threads": 2,
        "max_body_bytes": 2097152,
        "timeout_seconds": 20,
        "drain_seconds": 3,
    },
    "service": {
        "host": "scoring.models.example.org",
        "ingress": {"flavor": "nginx", "class_name": "webapprouting.kubernetes.azure.com"},
        "tls": {"enabled": True, "issuer": {"kind": "Issuer", "name": "internal-ca.v1"}},
        "auth": {"realm": "Boston scoring_v1", "existing_secret": "boston.basic-auth"},
        "autoscaling": {
            "enabled": True,
            "min_replicas": 1,
            "max_replicas": 3,
            "target_cpu": 60,
            "target_memory": 75,
        },
        "resources": {
            "requests": {"cpu": "1500m", "memory": "1.5Gi"},
            "limits": {"cpu": "3", "memory": "3Gi"},
        },
    },
}


@pytest.mark.parametrize(
    "model",
    [
        {"path": "model.rds", "source": "url", "url_secret": {"name": "model-sas", "key": "sas"}},
        {
            "path": "model.rds",
            "source": "pvc",
            "pvc": {"claim_name": "azurefile.models", "sub_path": "boston/v1/model.rds"},
        },
    ],
    ids=["url", "pvc"],
)
def test_a_manifest_using_every_option_renders_values_the_chart_accepts(
    rendered: Path, tmp_path: Path, model: dict
):
    from rmodelpack.manifest import parse_manifest
    from rmodelpack.render import render_files

    data = yaml.safe_load((BOSTON / "rmodel.yaml").read_text())
    data.update(EVERY_OPTION, model=model, version="2.0.0-rc_1")
    manifest = parse_manifest(data, source="every-option", base_dir=BOSTON)
    files, _, _ = render_files(manifest, BOSTON)
    values = tmp_path / "values.yaml"
    values.write_bytes(files["values.yaml"])
    result = rmodelpack("deploy", str(values), "--dry-run", "-n", "models")
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    ingress = next(d for d in docs if d["kind"] == "Ingress")
    assert ingress["spec"]["ingressClassName"] == "webapprouting.kubernetes.azure.com"
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/auth-secret"] == (
        "boston.basic-auth"
    )
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["RMP_WORKERS"] == "3" and env["RMP_THREADS"] == "2"
    assert env["RMP_MAX_BODY_BYTES"] == "2097152"
    assert env["RMP_MODEL_PATH"].endswith(".rds")
    certificate = next(d for d in docs if d["kind"] == "Certificate")
    assert certificate["spec"]["issuerRef"]["kind"] == "Issuer"
