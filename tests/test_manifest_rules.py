"""The manifest refuses what the chart refuses, field by field: whole-string patterns (no trailing
newline slips through), strict types (no "false" → False), the chart's patterns for the model
Secret key, the PVC sub path and the IngressClass, Docker's repository grammar, and an
autoscaling range completed with the chart's defaults. tests/chart/test_rules_agree.py feeds the
same values to the real chart."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CHART_DIR, deep_merge, nested

from rmodelpack import settings
from rmodelpack.exceptions import ManifestError
from rmodelpack.manifest import parse_manifest

MINIMAL: dict[str, Any] = {
    "apiVersion": "rmodelpack/v1",
    "name": "demo",
    "version": "1.0.0",
    "model": {"path": "model.rds"},
    "input": {"columns": [{"name": "x", "type": "number"}]},
}
USER = {"name": "alice", "password_env": "ALICE_PASSWORD"}


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    (tmp_path / "model.rds").write_bytes(b"not really a model")
    return tmp_path


def manifest_with(changes: dict[str, Any]) -> dict[str, Any]:
    """MINIMAL with nested changes merged in (dicts merge, everything else replaces)."""
    return deep_merge(copy.deepcopy(MINIMAL), changes)


def problems_of(changes: dict[str, Any], base_dir: Path) -> dict[str, str]:
    """{field path: "message | hint"}, or {} when the manifest is valid."""
    try:
        parse_manifest(manifest_with(changes), source="rmodel.yaml", base_dir=base_dir)
    except ManifestError as error:
        return {p.path: f"{p.message} | {p.hint}" for p in error.problems}
    return {}


def url_key(key: str) -> dict[str, Any]:
    return {"model": {"source": "url", "url_secret": {"name": "model-url", "key": key}}}


def pvc_sub_path(sub_path: str) -> dict[str, Any]:
    return {"model": {"source": "pvc", "pvc": {"claim_name": "models", "sub_path": sub_path}}}


def class_name(name: str) -> dict[str, Any]:
    return {"service": {"ingress": {"class_name": name}}}


def repository(name: str) -> dict[str, Any]:
    return {"image": {"repository": name}}


def autoscaling(**fields: Any) -> dict[str, Any]:
    return {"service": {"autoscaling": fields}}


# --- whole-string patterns -------------------------------------------------------------------

# (changes with a valid value, the field's path, a function that puts a value there)
PATTERNED = [
    ("name", "demo", lambda v: {"name": v}),
    ("version", "1.0.0", lambda v: {"version": v}),
    ("image.tag", "1.0.0", lambda v: {"image": {"tag": v}}),
    ("image.repository", "registry.example.com/models/demo", lambda v: repository(v)),
    ("image.base", "rmodelpack/r-base:trixie", lambda v: {"image": {"base": v}}),
    ("service.host", "demo.example.com", lambda v: {"service": {"host": v}}),
    (
        "service.auth.realm",
        "demo scoring",
        lambda v: {"service": {"auth": {"realm": v, "users": [USER]}}},
    ),
    (
        "service.auth.existing_secret",
        "htpasswd",
        lambda v: {"service": {"auth": {"existing_secret": v}}},
    ),
    (
        "service.auth.users[0].name",
        "alice",
        lambda v: {"service": {"auth": {"users": [{**USER, "name": v}]}}},
    ),
    (
        "service.auth.users[0].password_env",
        "ALICE_PASSWORD",
        lambda v: {"service": {"auth": {"users": [{**USER, "password_env": v}]}}},
    ),
    (
        "service.tls.issuer.name",
        "letsencrypt",
        lambda v: {"service": {"tls": {"issuer": {"name": v}}}},
    ),
    ("service.ingress.class_name", "nginx", class_name),
    (
        "model.url_secret.name",
        "model-url",
        lambda v: {"model": {"source": "url", "url_secret": {"name": v}}},
    ),
    ("model.url_secret.key", "url", url_key),
    (
        "model.pvc.claim_name",
        "models",
        lambda v: {"model": {"source": "pvc", "pvc": {"claim_name": v}}},
    ),
    ("model.pvc.sub_path", "boston/model.rds", pvc_sub_path),
    ("scoring.function", "score", lambda v: {"scoring": {"function": v}}),
    ("r.packages", "randomForest", lambda v: {"r": {"packages": [v]}}),
    ("r.system_packages", "libgomp1", lambda v: {"r": {"system_packages": [v]}}),
    (
        "service.resources.requests.cpu",
        "500m",
        lambda v: {"service": {"resources": {"requests": {"cpu": v}}}},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("path", "good", "put"), PATTERNED, ids=[p[0] for p in PATTERNED])
def test_a_trailing_newline_is_refused(model_dir, path, good, put):
    assert problems_of(put(good), model_dir) == {}, f"{good!r} must be a valid {path}"
    problems = problems_of(put(good + "\n"), model_dir)
    assert path in problems, problems
    assert "\n" not in problems[path], "the value is echoed escaped, on one line"


# --- strict types ----------------------------------------------------------------------------

STRICT = [
    ("runtime.batching.enabled", "false", "true or false"),
    ("runtime.batching.enabled", 0, "true or false"),
    ("runtime.batching.max_rows", True, "whole number"),
    ("runtime.batching.max_rows", "256", "whole number"),
    ("runtime.threads", "2", "whole number"),
    ("runtime.threads", 2.0, "whole number"),
    ("runtime.timeout_seconds", "30", "whole number"),
    ("runtime.drain_seconds", False, "whole number"),
    ("runtime.max_body_bytes", "2048", "whole number"),
    ("scoring.rowwise", "yes", "true or false"),
    ("service.tls.enabled", "true", "true or false"),
    ("service.auth.enabled", "false", "true or false"),
    ("service.autoscaling.enabled", 1, "true or false"),
    ("service.autoscaling.min_replicas", "2", "whole number"),
    ("service.autoscaling.target_cpu", "70", "whole number"),
    ("input.max_rows", "10", "whole number"),
]


@pytest.mark.parametrize(
    ("path", "value", "expected"), STRICT, ids=[f"{p}={v!r}" for p, v, _ in STRICT]
)
def test_values_of_the_wrong_type_are_not_coerced(model_dir, path, value, expected):
    changes = nested(path, value)
    if path.startswith("service.auth"):
        changes["service"]["auth"]["existing_secret"] = "htpasswd"
    problems = problems_of(changes, model_dir)
    assert path in problems, problems
    assert expected in problems[path]
    assert repr(value) in problems[path] or str(value) in problems[path]


def test_a_column_flag_is_not_coerced(model_dir):
    columns = [{"name": "x", "type": "number", "required": "false"}]
    problems = problems_of({"input": {"columns": columns}}, model_dir)
    assert "true or false" in problems["input.columns[0].required"]


def test_whole_numbers_are_still_numbers_for_bounds(model_dir):
    columns = [{"name": "x", "type": "number", "min": 0, "max": 1.5}]
    assert problems_of({"input": {"columns": columns}}, model_dir) == {}


# --- the chart's patterns --------------------------------------------------------------------


@pytest.mark.parametrize("key", ["url", "sas.url_1-x", "A" * 253])
def test_a_secret_key_the_chart_accepts(model_dir, key):
    assert problems_of(url_key(key), model_dir) == {}


@pytest.mark.parametrize("key", ["", "a/b", "a b", "sas:url", "A" * 254])
def test_a_secret_key_the_chart_refuses(model_dir, key):
    problems = problems_of(url_key(key), model_dir)
    assert "model.url_secret.key" in problems, problems
    assert "Secret key" in problems["model.url_secret.key"]


@pytest.mark.parametrize(
    "sub_path",
    ["model.rds", "boston/v1/model.rds", "/boston/model.rds", "..hidden/model.rds", ".m/x.rds"],
)
def test_a_sub_path_the_chart_accepts(model_dir, sub_path):
    assert problems_of(pvc_sub_path(sub_path), model_dir) == {}


@pytest.mark.parametrize(
    "sub_path",
    ["", "../model.rds", "a/../b.rds", "a/..", "./model.rds", "a//b.rds", "a/", "a\nb", "a b"],
)
def test_a_sub_path_out_of_the_claim_or_with_whitespace_is_refused(model_dir, sub_path):
    problems = problems_of(pvc_sub_path(sub_path), model_dir)
    assert "model.pvc.sub_path" in problems, problems
    assert "'..'" in problems["model.pvc.sub_path"]


@pytest.mark.parametrize("name", ["nginx", "webapprouting.kubernetes.azure.com", "a" * 253])
def test_an_ingress_class_the_chart_accepts(model_dir, name):
    assert problems_of(class_name(name), model_dir) == {}


@pytest.mark.parametrize("name", ["", "Nginx", "a_b", "-nginx", "a..b", "a" * 254])
def test_an_ingress_class_the_chart_refuses(model_dir, name):
    problems = problems_of(class_name(name), model_dir)
    assert "service.ingress.class_name" in problems, problems
    assert "IngressClass" in problems["service.ingress.class_name"]


# Docker's reference grammar: separator = [._] | __ | -+ between lowercase alphanumerics.
@pytest.mark.parametrize(
    "name",
    [
        "team--x",
        "team--x/model",
        "my__model",
        "a-b.c_d",
        "registry.example.com:5000/team---x/my__m",
        "a1/b2",
    ],
)
def test_a_repository_docker_accepts(model_dir, name):
    assert problems_of(repository(name), model_dir) == {}


@pytest.mark.parametrize(
    "name", ["a___b", "a._b", "a_-b", "-a", "a-", "a__", "a/_b", "Models/Boston", "a//b", "a:1"]
)
def test_a_repository_docker_refuses(model_dir, name):
    problems = problems_of(repository(name), model_dir)
    assert "image.repository" in problems, problems


def test_a_base_image_follows_the_same_grammar(model_dir):
    assert problems_of({"image": {"base": "team--x/r__base:4.4"}}, model_dir) == {}
    assert "image.base" in problems_of({"image": {"base": "team___x/r-base:4.4"}}, model_dir)


# --- autoscaling against the chart's defaults ------------------------------------------------

CHART_MIN = settings.AUTOSCALING_MIN_REPLICAS.default
CHART_MAX = settings.AUTOSCALING_MAX_REPLICAS.default


def test_the_autoscaling_defaults_are_the_charts():
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
    hpa = values["autoscaling"]
    assert hpa["minReplicas"] == CHART_MIN
    assert hpa["maxReplicas"] == CHART_MAX
    assert settings.AUTOSCALING_MIN_REPLICAS.chart == "autoscaling.minReplicas"
    assert settings.AUTOSCALING_MAX_REPLICAS.chart == "autoscaling.maxReplicas"


def test_min_replicas_alone_above_the_chart_default_max_is_refused(model_dir):
    problems = problems_of(autoscaling(min_replicas=CHART_MAX + 2), model_dir)
    text = problems["service.autoscaling"]
    assert f"min_replicas ({CHART_MAX + 2})" in text
    assert f"max_replicas ({CHART_MAX}" in text
    assert f"set max_replicas to at least {CHART_MAX + 2}" in text


def test_max_replicas_alone_below_the_chart_default_min_is_refused(model_dir):
    problems = problems_of(autoscaling(max_replicas=CHART_MIN - 1), model_dir)
    text = problems["service.autoscaling"]
    assert f"max_replicas ({CHART_MIN - 1})" in text
    assert f"min_replicas ({CHART_MIN}" in text
    assert f"set min_replicas to at most {CHART_MIN - 1}" in text


@pytest.mark.parametrize(
    "fields",
    [
        {"min_replicas": CHART_MAX},
        {"max_replicas": CHART_MIN},
        {"min_replicas": 12, "max_replicas": 12},
        {"min_replicas": 1, "max_replicas": 1},
        # the chart checks the range of an enabled HPA only; a disabled one keeps its numbers
        {"enabled": False, "min_replicas": CHART_MAX + 2},
        {"enabled": False, "max_replicas": CHART_MIN - 1},
    ],
    ids=repr,
)
def test_autoscaling_ranges_the_chart_accepts(model_dir, fields):
    assert problems_of(autoscaling(**fields), model_dir) == {}


def test_two_contradicting_numbers_are_refused_even_when_disabled(model_dir):
    problems = problems_of(autoscaling(enabled=False, min_replicas=5, max_replicas=2), model_dir)
    assert "above max_replicas" in problems["service.autoscaling"]
