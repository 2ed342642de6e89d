"""chart/README.md's parameter table is what readme-generator-for-helm makes of values.yaml."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from chart.helm_template import CHART_DIR

LOCAL_GENERATOR = CHART_DIR.parent / ".cache" / "npm" / "node_modules" / ".bin" / "readme-generator"


@pytest.fixture(scope="module")
def readme_generator(require_tool) -> str:
    require_tool("node")
    if LOCAL_GENERATOR.exists():
        return str(LOCAL_GENERATOR)
    return require_tool("readme-generator")


def test_parameter_table_is_current(readme_generator, tmp_path):
    committed = (CHART_DIR / "README.md").read_text()
    regenerated = tmp_path / "README.md"
    shutil.copy(CHART_DIR / "README.md", regenerated)
    proc = subprocess.run(
        [
            readme_generator,
            "--values",
            str(CHART_DIR / "values.yaml"),
            "--readme",
            str(regenerated),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Metadata is correct" in proc.stdout
    assert regenerated.read_text() == committed, (
        "chart/README.md is stale: run .cache/npm/node_modules/.bin/readme-generator "
        "--values chart/values.yaml --readme chart/README.md"
    )


def test_every_value_is_documented_in_the_table():
    readme = (CHART_DIR / "README.md").read_text()
    for key in (
        "image.repository",
        "model.source",
        "auth.users",
        "keda.triggers",
        "tls.minVersion",
    ):
        assert f"| `{key}`" in readme
