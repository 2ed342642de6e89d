"""helm lint --strict and ct lint over the defaults and every chart/ci scenario; helm 3 too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chart.helm_template import (
    CHART_DIR,
    SCENARIOS,
    parse_docs,
    render_text,
    run_helm,
    scenario_files,
)

REPO_ROOT = CHART_DIR.parent

pytestmark = pytest.mark.helm


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict_passes(helm, scenario):
    args = ["lint", "--strict", str(CHART_DIR)]
    if scenario != "default":
        args += ["--values", str(scenario_files()[scenario])]
    output = run_helm(args, helm=helm)
    assert "0 chart(s) failed" in output


@pytest.mark.slow
def test_ct_lint_passes_on_every_scenario(require_tool, helm):
    ct = require_tool("ct")
    # ct runs yamllint and yamale from PATH; they live beside this interpreter in the venv.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    for tool in ("yamllint", "yamale"):
        if shutil.which(tool, path=path) is None:
            require_tool(tool)
    env = {**os.environ, "PATH": path}
    proc = subprocess.run(
        [ct, "lint", "--config", "ci/ct.yaml"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "All charts linted successfully" in output
    for path in scenario_files().values():
        assert f'values file "chart/ci/{path.name}"' in output


def scenario_values(scenario: str) -> list[Path]:
    return [] if scenario == "default" else [scenario_files()[scenario]]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm3_renders_the_same_objects_as_helm4(require_tool, helm, scenario_text, scenario):
    helm3 = require_tool("helm3")
    # Objects, not text: helm 3 and 4 separate documents with different blank lines.
    with_helm3 = parse_docs(render_text(helm=helm3, values_files=scenario_values(scenario)))
    assert with_helm3 == parse_docs(scenario_text(scenario))
    assert {doc["kind"] for doc in with_helm3} >= {"Deployment", "Service"}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendering_is_deterministic(helm, scenario_text, scenario):
    assert render_text(values_files=scenario_values(scenario), helm=helm) == scenario_text(scenario)
