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
    render_chart,
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


def test_helm3_renders_the_same_objects_as_helm4(require_tool, helm):
    helm3 = require_tool("helm3")
    everything = [scenario_files()["everything"]]
    with_helm3 = render_chart(helm=helm3, values_files=everything)
    with_helm4 = render_chart(helm=helm, values_files=everything)
    assert with_helm3 == with_helm4
    assert {doc["kind"] for doc in with_helm3} >= {"Deployment", "Ingress", "Middleware"}


def test_rendering_is_deterministic(helm):
    everything = [scenario_files()["everything"]]
    assert render_text(values_files=everything, helm=helm) == render_text(
        values_files=everything, helm=helm
    )
