"""The command line, run as a user runs it: python -m rmodelpack / the console script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import EXAMPLES_DIR, REPO_ROOT, require_tool
from conftest import run_cli as rmodelpack

COMMANDS = ["init", "validate", "schema", "render", "build", "size", "deploy", "serve"]
BOSTON = EXAMPLES_DIR / "boston-rf"


@pytest.fixture(scope="module")
def boston_env() -> dict[str, str]:
    if not (BOSTON / "model.rds").exists():
        pytest.skip("examples/boston-rf/model.rds is not trained (run: bash ci/setup.sh)")
    return {"BOSTON_SCORER_PASSWORD": "correct horse battery staple"}


def test_version():
    result = rmodelpack("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("rmodelpack 0.")


def test_console_script_is_installed():
    script = shutil.which("rmodelpack", path=str(Path(sys.executable).parent))
    assert script, "the rmodelpack console script is missing from the venv"
    assert subprocess.run([script, "--help"], capture_output=True).returncode == 0


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = rmodelpack(command, "--help")
    assert result.returncode == 0
    assert f"usage: rmodelpack {command}" in result.stdout


def test_no_command_is_a_usage_error():
    assert rmodelpack().returncode == 2


def test_validate_ok(boston_env):
    result = rmodelpack("validate", str(BOSTON))
    assert result.returncode == 0, result.stderr
    assert "valid (boston-rf 1.0.0)" in result.stdout


def test_validate_lists_every_problem_with_exit_2(tmp_path: Path):
    (tmp_path / "rmodel.yaml").write_text(
        "apiVersion: rmodelpack/v1\nname: Bad_Name\nversion: 2\nmodle: {}\n"
    )
    result = rmodelpack("validate", str(tmp_path))
    assert result.returncode == 2
    for fragment in (
        "5 problems",
        "name:",
        "version:",
        "modle:",
        "did you mean 'model'?",
        "model: is required",
        "input: is required",
    ):
        assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_schema_prints_json_schema():
    result = rmodelpack("schema")
    assert result.returncode == 0
    assert '"apiVersion"' in result.stdout


def test_render_writes_context_and_values(boston_env, tmp_path: Path):
    result = rmodelpack("render", str(BOSTON), "-o", str(tmp_path / "out"), env=boston_env)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    for name in (
        "Dockerfile",
        ".dockerignore",
        "app/rmodelpack.json",
        "model/model.rds",
        "values.yaml",
        "runtime/entrypoint.sh",
    ):
        assert (out / name).is_file(), name
    values = yaml.safe_load((out / "values.yaml").read_text())
    assert values["image"]["repository"] == "127.0.0.1:5000/models/boston-rf"
    assert values["auth"]["users"][0].startswith("scorer:$2b$")
    assert "correct horse" not in (out / "values.yaml").read_text()


def test_render_without_password_is_exit_2_and_writes_nothing(boston_env, tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k != "BOSTON_SCORER_PASSWORD"}
    result = subprocess.run(
        [sys.executable, "-m", "rmodelpack", "render", str(BOSTON), "-o", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 2
    assert "BOSTON_SCORER_PASSWORD" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_init_scaffolds_a_valid_manifest(tmp_path: Path, boston_env):
    require_tool("Rscript")
    shutil.copy(BOSTON / "model.rds", tmp_path / "model.rds")
    result = rmodelpack("init", str(tmp_path / "model.rds"), "--name", "my-forest")
    assert result.returncode == 0, result.stderr
    manifest = yaml.safe_load((tmp_path / "rmodel.yaml").read_text())
    names = [c["name"] for c in manifest["input"]["columns"]]
    assert names == [
        "crim",
        "zn",
        "indus",
        "chas",
        "nox",
        "rm",
        "age",
        "dis",
        "rad",
        "tax",
        "ptratio",
        "black",
        "lstat",
    ]
    assert manifest["r"]["packages"] == ["randomForest"]
    assert (tmp_path / "score.R").is_file()
    assert rmodelpack("validate", str(tmp_path)).returncode == 0
    again = rmodelpack("init", str(tmp_path / "model.rds"))
    assert again.returncode == 2 and "--force" in again.stderr


def test_init_from_sample_data_keeps_factor_levels(tmp_path: Path):
    rscript = require_tool("Rscript")
    code = (
        "set.seed(1); m <- glm(I(Sepal.Width > 3) ~ Sepal.Length + Species, data = iris, "
        "family = binomial); saveRDS(m, 'model.rds'); write.csv(iris[1:20, ], 'sample.csv', "
        "row.names = FALSE)"
    )
    subprocess.run([rscript, "-e", code], cwd=tmp_path, check=True, capture_output=True)
    result = rmodelpack("init", str(tmp_path / "model.rds"), "--data", str(tmp_path / "sample.csv"))
    assert result.returncode == 0, result.stderr
    columns = {
        c["name"]: c
        for c in yaml.safe_load((tmp_path / "rmodel.yaml").read_text())["input"]["columns"]
    }
    assert columns["Species"]["type"] == "factor"
    assert columns["Species"]["levels"] == ["setosa", "versicolor", "virginica"]
    assert columns["Sepal.Length"]["type"] == "number"
    assert set(columns) == {"Sepal.Length", "Species"}, "only the model's predictors"


def test_deploy_without_helm_is_a_clear_exit_1(boston_env, tmp_path: Path):
    result = rmodelpack(
        "deploy",
        str(BOSTON),
        "-o",
        str(tmp_path / "out"),
        env={**boston_env, "RMODELPACK_HELM": "helm-that-does-not-exist"},
    )
    assert result.returncode == 1
    assert "helm-that-does-not-exist' is not installed" in result.stderr
    assert "Traceback" not in result.stderr


def test_render_refuses_to_replace_the_manifest_folder_or_foreign_files(boston_env, tmp_path):
    example = tmp_path / "example"
    shutil.copytree(BOSTON, example, ignore=shutil.ignore_patterns(".rmodelpack"))
    before = sorted(p.name for p in example.iterdir())
    for target in (example, tmp_path):
        result = rmodelpack("render", str(example), "-o", str(target), env=boston_env)
        assert result.returncode == 2, result.stderr
        assert "manifest's folder" in result.stderr
    assert sorted(p.name for p in example.iterdir()) == before
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("mine")
    result = rmodelpack("render", str(example), "-o", str(foreign), env=boston_env)
    assert result.returncode == 2
    assert "did not write" in result.stderr
    assert (foreign / "todo.txt").read_text() == "mine"


def test_a_password_bcrypt_cannot_hash_is_exit_2(boston_env, tmp_path):
    result = rmodelpack(
        "render",
        str(BOSTON),
        "-o",
        str(tmp_path / "o"),
        env={"BOSTON_SCORER_PASSWORD": "x" * 73},
    )
    assert result.returncode == 2
    assert "longer than bcrypt's 72 bytes" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreadable_inputs_are_clear_errors(tmp_path):
    (tmp_path / "rmodel.yaml").write_bytes(b"name: caf\xe9\n")
    result = rmodelpack("validate", str(tmp_path))
    assert result.returncode == 2 and "is not UTF-8 text" in result.stderr
    values = tmp_path / "values.yaml"
    values.write_text("- just\n- a list\n")
    result = rmodelpack("deploy", str(values), "--dry-run")
    assert result.returncode == 2 and "is not a YAML mapping" in result.stderr
    result = rmodelpack("schema", "-o", str(tmp_path / "missing" / "schema.json"))
    assert result.returncode == 2
    for output in (result.stderr,):
        assert "Traceback" not in output
