"""checkov's Kubernetes checks on the rendered manifests of every chart scenario and of the values
`rmodelpack render` writes for every example: 0 failed. The skipped checks are the ones
chart/README.md lists, each with its reason. checkov lives in its own venv (ci/setup.sh tools)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, UNDER_CI

from chart.helm_template import CHART_DIR, SCENARIOS, render_text
from chart.test_rendered_examples import EXAMPLES, passwords_for

CHECKOV = REPO_ROOT / ".cache" / "checkov" / "bin" / "checkov"
# Each one is explained in chart/README.md ("Security checks (checkov)").
SKIPPED_CHECKS = [
    "CKV_K8S_8",
    "CKV_K8S_9",
    "CKV_K8S_11",
    "CKV_K8S_15",
    "CKV_K8S_21",
    "CKV_K8S_35",
    "CKV_K8S_43",
    "CKV2_K8S_6",
]

pytestmark = pytest.mark.helm


@pytest.fixture(scope="module")
def checkov() -> str:
    if not CHECKOV.exists():
        message = f"{CHECKOV} is missing (run: bash ci/setup.sh tools)"
        if UNDER_CI:
            pytest.fail(message)
        pytest.skip(message)
    return str(CHECKOV)


def run_checkov(checkov: str, directory: Path, skipped: list[str]) -> list[dict]:
    args = [checkov, "--directory", str(directory), "--framework", "kubernetes"]
    args += ["--output", "json", "--compact", "--skip-download"]
    if skipped:
        args += ["--skip-check", ",".join(skipped)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    return report if isinstance(report, list) else [report]


def failed_checks(reports: list[dict]) -> list[str]:
    return sorted(
        f"{check['check_id']} {check['resource']} in {check['file_path']}: {check['check_name']}"
        for report in reports
        for check in report["results"]["failed_checks"]
    )


def render_example(manifest: Path, out: Path) -> Path:
    proc = subprocess.run(
        [sys.executable, "-m", "rmodelpack", "render", str(manifest), "-o", str(out)],
        env={**os.environ, **passwords_for(manifest)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / "values.yaml"


@pytest.fixture(scope="module")
def rendered_dir(helm, scenario_text, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("checkov")
    for scenario in SCENARIOS:
        (directory / f"scenario-{scenario}.yaml").write_text(scenario_text(scenario))
    for manifest in EXAMPLES:
        name = manifest.parent.name
        values = render_example(manifest, tmp_path_factory.mktemp(name) / "out")
        text = render_text(values_files=[values], helm=helm)
        (directory / f"example-{name}.yaml").write_text(text)
    return directory


def test_every_render_passes_checkov(checkov, rendered_dir):
    reports = run_checkov(checkov, rendered_dir, SKIPPED_CHECKS)
    assert failed_checks(reports) == []
    checked_files = {
        Path(check["file_path"]).name
        for report in reports
        for check in report["results"]["passed_checks"]
    }
    assert checked_files == {path.name for path in rendered_dir.iterdir()}
    assert sum(report["summary"]["passed"] for report in reports) > 100


def test_checkov_catches_a_weakened_pod(checkov, helm, tmp_path):
    """Control: a value that allows privilege escalation fails CKV_K8S_20 (past the schema, which
    refuses it: test_hostile_values.py)."""
    values = {"containerSecurityContext": {"allowPrivilegeEscalation": True}}
    text = render_text(
        values,
        helm=helm,
        show_only=["templates/deployment.yaml"],
        extra_args=["--skip-schema-validation"],
    )
    (tmp_path / "weak.yaml").write_text(text)
    failures = failed_checks(run_checkov(checkov, tmp_path, SKIPPED_CHECKS))
    assert any(failure.startswith("CKV_K8S_20 Deployment.") for failure in failures), failures


def test_skipped_checks_are_the_ones_the_readme_explains():
    readme = (CHART_DIR / "README.md").read_text()
    block = re.search(
        r"<!-- checkov-skips: start -->(.*?)<!-- checkov-skips: end -->", readme, re.S
    )
    assert block, "chart/README.md lacks the checkov-skips block"
    documented = re.findall(r"^- `(CKV2?_K8S_\d+)`: \S.{20,}$", block.group(1), re.M)
    assert documented == SKIPPED_CHECKS
