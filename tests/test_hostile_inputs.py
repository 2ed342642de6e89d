"""Manifests, values files, output folders and passwords that a black-box probe found getting
past validation (to fail later, at deploy or when scoring) or ending in a traceback. Each now gets
a clear error naming the field and the fix, with exit 2, before anything is written."""

from __future__ import annotations

import copy
import datetime
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import require_tool, run_cli
from test_manifest import MINIMAL, problems_of

from rmodelpack.exceptions import (
    CredentialError,
    ManifestError,
    OutputDirError,
    RenderError,
    UsageError,
)
from rmodelpack.init import service_name
from rmodelpack.manifest import load_manifest, parse_manifest
from rmodelpack.pipeline import deploy_target, render


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "model.rds").write_bytes(b"not really a model")
    (tmp_path / "rmodel.yaml").write_text(yaml.safe_dump(MINIMAL))
    return tmp_path


def changed(path: str, value) -> dict:
    data = copy.deepcopy(MINIMAL)
    *parents, leaf = path.split(".")
    node = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    node[leaf] = value
    return data


def test_a_key_twice_in_the_manifest_is_an_error_not_a_dropped_block(project: Path) -> None:
    """PyYAML keeps the last key: a second `service:` dropped the first one's basic auth."""
    text = yaml.safe_dump(MINIMAL) + (
        "service:\n  auth:\n    users: [{name: alice, password_env: ALICE_PASSWORD}]\n"
        "service:\n  host: m.example.com\n"
    )
    (project / "rmodel.yaml").write_text(text)
    with pytest.raises(ManifestError) as caught:
        load_manifest(project)
    [problem] = caught.value.problems
    assert "found the key 'service' twice" in problem.message
    assert problem.path.startswith("line ")


@pytest.mark.parametrize("field", ["min", "max"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_bounds_must_be_finite(project: Path, field: str, value: float) -> None:
    """NaN reached the runtime's JSON config, which R cannot read: the pod never started."""
    data = changed("input.columns.0." + field, value)
    assert "finite number" in problems_of(data, project)[f"input.columns[0].{field}"]


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), {"when": datetime.date(2024, 1, 1)}, b"hi"]
)
def test_predict_args_must_be_json_values(project: Path, value) -> None:
    data = changed("scoring.predict_args", {"arg": value})
    assert "is not a JSON value" in problems_of(data, project)["scoring.predict_args"]


@pytest.mark.parametrize(
    ("column", "key"),
    [
        ({"type": "factor", "levels": ["a", "b", "a"]}, "levels"),
        ({"type": "string", "allowed": ["x", "x"]}, "allowed"),
    ],
)
def test_a_level_twice_is_an_error(project: Path, column: dict, key: str) -> None:
    """R refuses a factor with a level twice: every request was a 500."""
    data = changed("input.columns", [{"name": "g", **column}])
    assert f"{key} lists" in problems_of(data, project)["input.columns[0]"]


def test_a_user_twice_is_an_error(project: Path) -> None:
    users = [{"name": "u", "password_env": "A"}, {"name": "u", "password_env": "B"}]
    data = changed("service.auth", {"users": users})
    assert "listed twice" in problems_of(data, project)["service.auth"]


@pytest.mark.parametrize("name", ["1model", "a" * 54, "-x"])
def test_the_name_must_name_a_release_and_its_service(project: Path, name: str) -> None:
    assert "cannot name a helm release" in problems_of(changed("name", name), project)["name"]


def test_a_53_character_name_is_fine(project: Path) -> None:
    parse_manifest(changed("name", "a" * 53), source="rmodel.yaml", base_dir=project)


@pytest.mark.parametrize(
    "values",
    [
        "model:\n  name: --output-dir=/tmp/rmodelpack-pwned\n",
        "model:\n  name: --namespace=kube-system\n",
        "model: {name: 123}\n",
        "model: {name: [a, b]}\n",
    ],
)
def test_a_values_file_cannot_put_flags_on_helms_command_line(tmp_path: Path, values: str) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(values)
    with pytest.raises(UsageError, match="cannot name a helm release"):
        deploy_target(path)
    result = run_cli("deploy", str(path), "--dry-run")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert not Path("/tmp/rmodelpack-pwned").exists()


def test_a_release_flag_is_checked_too(project: Path) -> None:
    with pytest.raises(UsageError, match="--release"):
        deploy_target(project, release="--generate-name")


def test_a_deeply_nested_values_file_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "values.yaml"
    path.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    result = run_cli("deploy", str(path), "--dry-run")
    assert result.returncode == 2, result.stderr
    assert "nested too deeply" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("out", ["/proc/rmodelpack-out", "a-file/sub", "x" * 300])
def test_an_output_folder_that_cannot_be_written_is_exit_2(project: Path, out: str) -> None:
    (project / "a-file").write_text("a file, not a folder")
    result = run_cli("render", str(project), "-o", out, cwd=project)
    assert result.returncode == 2, result.stderr
    assert "cannot write the output folder" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    with pytest.raises(OutputDirError):
        render(project, project / out)


def test_a_users_dot_old_folder_beside_the_output_is_left_alone(project: Path) -> None:
    out = project / "out"
    render(project, out)
    kept = project / ".out.old"
    kept.mkdir()
    (kept / "notes").write_text("mine")
    render(project, out)
    assert (kept / "notes").read_text() == "mine"
    assert sorted(p.name for p in project.iterdir() if p.name.startswith(".out")) == [".out.old"]


def test_a_password_that_is_not_utf8_is_a_credential_error(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = changed("service.auth", {"users": [{"name": "alice", "password_env": "PW"}]})
    (project / "rmodel.yaml").write_text(yaml.safe_dump(data))
    # The byte 0xff, as Python holds an environment value that is not UTF-8.
    result = run_cli("render", str(project), "-o", str(project / "out"), env={"PW": "\udcff"})
    assert result.returncode == 2, result.stderr
    assert "not UTF-8" in result.stderr and "Traceback" not in result.stderr
    assert not (project / "out").exists()
    monkeypatch.setenv("PW", "\udcff")
    with pytest.raises(CredentialError, match="not UTF-8"):
        render(project, project / "out")


@pytest.mark.parametrize("host", ["10.0.0.1", "010.0.0.1", "0.0.0.0"])
def test_an_ip_address_is_not_an_ingress_host(project: Path, host: str) -> None:
    """The API server refuses an IP as an Ingress host, leading zeros included (it reads
    010.0.0.1 as an IP); validation said nothing and deploy failed."""
    assert "is an IP address" in problems_of(changed("service.host", host), project)["service.host"]


@pytest.mark.parametrize("host", ["10.0.0.256", "1.2.3.4.example.com", "ml.example.com"])
def test_a_host_name_made_of_digits_is_still_a_host_name(project: Path, host: str) -> None:
    parse_manifest(changed("service.host", host), source="rmodel.yaml", base_dir=project)


@pytest.mark.parametrize("folder", ["2024-model", "a" * 80, "---", "My Model!"])
def test_init_names_a_model_by_the_manifests_rule(project: Path, folder: str) -> None:
    name = service_name(Path(f"/projects/{folder}/model.rds"), None)
    parse_manifest(changed("name", name), source="rmodel.yaml", base_dir=project)


def with_user(project: Path, **source: str) -> None:
    data = changed("service.auth", {"users": [{"name": "alice", **source}]})
    (project / "rmodel.yaml").write_text(yaml.safe_dump(data))


def test_a_password_file_that_is_a_fifo_is_refused_not_waited_on(project: Path) -> None:
    os.mkfifo(project / "pw")
    with_user(project, password_file="pw")
    result = run_cli("render", str(project), "-o", str(project / "out"), timeout=60)
    assert result.returncode == 2, result.stderr
    assert "is not a regular file" in result.stderr


def test_a_password_file_of_two_lines_is_refused(project: Path) -> None:
    (project / "pw").write_text("first\nsecond\n")
    with_user(project, password_file="pw")
    with pytest.raises(CredentialError, match="more than one line"):
        render(project, project / "out")


@pytest.mark.parametrize(
    ("example", "reason"),
    [("[" * 100_000 + "]" * 100_000, "nested too deeply"), ('[{"x": NaN}]', "not a JSON value")],
)
def test_an_example_that_is_not_json_is_a_render_error(
    project: Path, example: str, reason: str
) -> None:
    (project / "example.json").write_text(example)
    data = changed("input.example", "example.json")
    (project / "rmodel.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(RenderError, match=reason):
        render(project, project / "out")


def test_a_corrupt_stored_sizing_is_ignored(project: Path) -> None:
    out = project / "out"
    first = render(project, out)
    (out / "sizing.json").write_text(
        json.dumps({"model_sha256": first.model_sha256, "workers": 1, "limit_mib": "x"})
    )
    (out / "values.yaml").write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    render(project, out)


def test_a_manifest_with_a_wrong_api_version_gets_the_manifests_error(project: Path) -> None:
    data = dict(MINIMAL, apiVersion="rmodelpack/v0")
    (project / "rmodel.yaml").write_text(yaml.safe_dump(data))
    result = run_cli("deploy", str(project / "rmodel.yaml"), "--dry-run")
    assert result.returncode == 2, result.stderr
    assert "apiVersion" in result.stderr and "model.name" not in result.stderr


def saved_in_r(folder: Path, code: str) -> None:
    rscript = require_tool("Rscript")
    subprocess.run([rscript, "-e", code], cwd=folder, check=True, capture_output=True)


def test_init_takes_a_model_saved_as_upper_case_rds(tmp_path: Path) -> None:
    saved_in_r(tmp_path, "saveRDS(lm(mpg ~ wt, mtcars), 'model.RDS')")
    result = run_cli("init", str(tmp_path / "model.RDS"))
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load((tmp_path / "rmodel.yaml").read_text())["model"]["path"] == "model.RDS"


def test_init_types_whole_numbers_by_the_models_terms_not_by_read_csv(tmp_path: Path) -> None:
    """read.csv reads a column of whole numbers as integer; lm saw it as numeric, so an input
    of 6.5 must be valid."""
    saved_in_r(
        tmp_path,
        "saveRDS(lm(mpg ~ cyl + wt, mtcars), 'model.rds'); "
        "write.csv(mtcars, 'sample.csv', row.names = FALSE)",
    )
    result = run_cli("init", str(tmp_path / "model.rds"), "--data", str(tmp_path / "sample.csv"))
    assert result.returncode == 0, result.stderr
    columns = yaml.safe_load((tmp_path / "rmodel.yaml").read_text())["input"]["columns"]
    assert {c["name"]: c["type"] for c in columns} == {"cyl": "number", "wt": "number"}


def test_init_force_onto_a_folder_named_like_the_manifest_is_exit_2(tmp_path: Path) -> None:
    saved_in_r(tmp_path, "saveRDS(lm(mpg ~ wt, mtcars), 'model.rds')")
    (tmp_path / "rmodel.yaml").mkdir()
    result = run_cli("init", str(tmp_path / "model.rds"), "--force")
    assert result.returncode == 2, result.stderr
    assert "is not a file" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "score.R").exists()


def test_a_refused_init_force_gives_score_r_its_text_back(tmp_path: Path) -> None:
    """A sample whose factor has no levels makes a manifest validation refuses; the score.R that
    --force overwrote first must come back, not be deleted."""
    saved_in_r(
        tmp_path,
        "saveRDS(list(a = 1), 'model.rds'); "
        "saveRDS(data.frame(g = factor(character(0))), 'sample.rds')",
    )
    (tmp_path / "score.R").write_text("# my own scorer\n")
    result = run_cli(
        "init", str(tmp_path / "model.rds"), "--data", str(tmp_path / "sample.rds"), "--force"
    )
    assert result.returncode == 2, result.stderr
    assert "needs its levels" in result.stderr
    assert (tmp_path / "score.R").read_text() == "# my own scorer\n"
    assert not (tmp_path / "rmodel.yaml").exists()
