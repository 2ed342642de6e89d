"""The caret-recipes example: a caret train object with a recipe, trained in the trixie image
(R 4.5; the host has no caret), described by `rmodelpack init` with the host's R.
"""

from __future__ import annotations

import shutil

import pytest
import yaml
from conftest import EXAMPLES_DIR, run_cli

from image.containers import train_in_image

pytestmark = [pytest.mark.docker, pytest.mark.r]

EXAMPLE = EXAMPLES_DIR / "caret-recipes"


def test_init_reads_predictors_and_levels_from_the_recipe_not_the_outcome(tmp_path):
    train_in_image(EXAMPLE)
    shutil.copy(EXAMPLE / "model.rds", tmp_path / "model.rds")

    done = run_cli("init", str(tmp_path / "model.rds"), "--name", "caret-recipes")

    assert done.returncode == 0, done.stderr
    scaffold = yaml.safe_load((tmp_path / "rmodel.yaml").read_text())
    manifest = yaml.safe_load((EXAMPLE / "rmodel.yaml").read_text())
    assert scaffold["input"]["columns"] == [
        {key: column[key] for key in ("name", "type", "levels") if key in column}
        for column in manifest["input"]["columns"]
    ]
    assert "low" not in {column["name"] for column in scaffold["input"]["columns"]}
    assert scaffold["r"]["packages"] == ["caret", "recipes"]
    assert scaffold["output"]["kind"] == "class"
