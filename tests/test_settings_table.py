"""docs/design.md's "Settings" table is the truth about every runtime setting's names and default:
this test fails when settings.py, the manifest model, chart/values.yaml, the chart's templates,
the rendered runtime config or the R runtime disagree with it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CHART_DIR, REPO_ROOT

from rmodelpack import settings
from rmodelpack.manifest import Manifest, _unwrap, parse_manifest
from rmodelpack.render import runtime_config

DESIGN = REPO_ROOT / "docs" / "design.md"
RUNTIME_DIR = REPO_ROOT / "rmodelpack" / "runtime"
NONE = "—"
HEADER = ["manifest field", "chart value", "environment variable", "default"]


def settings_table(text: str) -> list[dict[str, str]]:
    """The rows of the first table under "## Settings", as {header: cell without backticks}."""
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    lines = [line.strip() for line in section.splitlines() if line.strip().startswith("|")]
    cells = [[cell.strip().strip("`") for cell in line.strip("|").split("|")] for line in lines]
    assert cells and cells[0] == HEADER, f"the Settings table's header is {HEADER}"
    return [dict(zip(HEADER, row, strict=True)) for row in cells[2:]]


ROWS = settings_table(DESIGN.read_text(encoding="utf-8"))


def row_id(row: dict[str, str]) -> str:
    return row["manifest field"] if row["manifest field"] != NONE else row["chart value"]


def name(cell: str) -> str | None:
    return None if cell == NONE else cell


def default_of(row: dict[str, str]) -> Any:
    return yaml.safe_load(row["default"])


def setting_for(row: dict[str, str]) -> settings.Setting:
    manifest, chart = name(row["manifest field"]), name(row["chart value"])
    matches = [s for s in settings.SETTINGS if (s.manifest, s.chart) == (manifest, chart)]
    assert matches, f"settings.py has no setting {manifest} / {chart}"
    return matches[0]


def dig(data: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        assert isinstance(data, dict) and key in data, f"no {key!r} on the way to {dotted}"
        data = data[key]
    return data


def manifest_default(dotted: str) -> Any:
    """The default of a manifest field, read from the pydantic model (not from settings.py)."""
    model: Any = Manifest
    *parents, last = dotted.split(".")
    for key in parents:
        assert key in model.model_fields, f"the manifest has no {dotted}"
        model = _unwrap(model.model_fields[key].annotation)
    assert last in model.model_fields, f"the manifest has no {dotted}"
    return model.model_fields[last].default


def mentions(folder: Path, patterns: tuple[str, ...], word: str) -> list[str]:
    return [
        path.name
        for pattern in patterns
        for path in sorted(folder.glob(pattern))
        if re.search(rf"\b{re.escape(word)}\b", path.read_text(encoding="utf-8"))
    ]


def test_the_table_lists_every_setting_once():
    listed = [setting_for(row) for row in ROWS]
    assert len(set(listed)) == len(listed), "a setting is listed twice"
    assert set(listed) == set(settings.SETTINGS), "settings.py and the table list other settings"


@pytest.mark.parametrize("row", ROWS, ids=row_id)
def test_settings_py_agrees_with_the_row(row):
    setting = setting_for(row)
    assert setting.env == name(row["environment variable"])
    assert setting.default == default_of(row)


@pytest.mark.parametrize("row", [r for r in ROWS if name(r["manifest field"])], ids=row_id)
def test_the_manifest_has_the_field_with_the_default(row):
    assert manifest_default(row["manifest field"]) == default_of(row)


@pytest.mark.parametrize("row", [r for r in ROWS if name(r["manifest field"])], ids=row_id)
def test_the_runtime_config_carries_the_field_under_the_same_path(row, tmp_path: Path):
    (tmp_path / "model.rds").write_bytes(b"x")
    manifest = parse_manifest(
        {
            "apiVersion": "rmodelpack/v1",
            "name": "m",
            "version": "1",
            "model": {"path": "model.rds"},
            "input": {"columns": [{"name": "x", "type": "number"}]},
        },
        source="m",
        base_dir=tmp_path,
    )
    config = runtime_config(manifest, "0" * 64)
    assert dig(config, row["manifest field"]) == default_of(row)


@pytest.mark.parametrize("row", [r for r in ROWS if name(r["chart value"])], ids=row_id)
def test_chart_values_has_the_key_with_the_default(row):
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
    default = default_of(row)
    expected = None if default == settings.AUTO else default
    assert dig(values, row["chart value"]) == expected


@pytest.mark.parametrize("row", [r for r in ROWS if name(r["environment variable"])], ids=row_id)
def test_the_chart_sets_and_the_runtime_reads_the_variable(row):
    variable = row["environment variable"]
    assert mentions(CHART_DIR / "templates", ("*.yaml", "*.tpl"), variable), (
        f"no chart template sets {variable}"
    )
    assert mentions(RUNTIME_DIR, ("*.R", "entrypoint.sh"), variable), (
        f"the runtime does not read {variable}"
    )


@pytest.mark.parametrize(
    "row", [r for r in ROWS if not name(r["environment variable"])], ids=row_id
)
def test_the_runtime_reads_a_config_only_field(row):
    key = row["manifest field"].rsplit(".", 1)[-1]
    assert mentions(RUNTIME_DIR, ("*.R",), key), f"the runtime never reads {row['manifest field']}"
