"""The manifest model and the chart enforce the same rules: each case feeds the same setting, with
the same value, to rmodelpack's manifest validation (load_manifest) and to the real `helm
template` of chart/, and both must reject it (each naming the field) or both accept it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import deep_merge

from chart.helm_template import HelmFailedError, render_chart
from rmodelpack.exceptions import ManifestError
from rmodelpack.manifest import load_manifest

pytestmark = pytest.mark.helm

BCRYPT_LINE = "alice:$2b$12$" + "a" * 53
MANIFEST_USER = {"name": "alice", "password_env": "ALICE_PASSWORD"}
BASE_MANIFEST = {
    "apiVersion": "rmodelpack/v1",
    "name": "boston-rf",
    "version": "1.0.0",
    "model": {"path": "model.rds"},
    "input": {"columns": [{"name": "crim", "type": "number"}]},
}


@dataclass(frozen=True)
class Case:
    """One setting as the manifest and the chart spell it (dotted path → value)."""

    id: str
    manifest: dict[str, Any]
    chart: dict[str, Any]
    accepted: bool
    # Words each side's error must contain; default: the last key of the first path.
    manifest_word: str = ""
    chart_word: str = ""


def nested(dotted: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, value in dotted.items():
        *parents, leaf = path.split(".")
        node = tree
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return tree


def bounds(manifest_path: str, chart_path: str, low: int, high: int) -> list[Case]:
    """low-1 and high+1 are refused, low and high accepted, by both."""
    return [
        Case(
            f"{chart_path}={value}",
            {manifest_path: value},
            {chart_path: value},
            low <= value <= high,
        )
        for value in (low - 1, low, high, high + 1)
    ]


def same(manifest_path: str, chart_path: str, value: Any, accepted: bool) -> Case:
    """One field, the same value on both sides."""
    return Case(f"{chart_path}={value!r}", {manifest_path: value}, {chart_path: value}, accepted)


def realm(value: str, accepted: bool, flavor: str = "traefik") -> Case:
    return Case(
        f"auth.realm={value!r}/{flavor}",
        {
            "service.auth.realm": value,
            "service.auth.users": [MANIFEST_USER],
            "service.ingress.flavor": flavor,
        },
        {"auth.realm": value, "auth.enabled": True, "auth.users": [BCRYPT_LINE],
         "ingress.flavor": flavor},
        accepted,
    )  # fmt: skip


URL_SOURCE = {"model.source": "url", "model.sha256": "ab" * 32}

CASES = [
    *bounds("runtime.workers", "runtime.workers", 1, 64),
    Case("runtime.workers=auto", {"runtime.workers": "auto"}, {"runtime.workers": None}, True),
    *bounds("runtime.threads", "runtime.threads", 1, 64),
    *bounds("runtime.timeout_seconds", "runtime.timeoutSeconds", 1, 3600),
    *bounds("runtime.drain_seconds", "runtime.drainSeconds", 0, 300),
    *bounds("runtime.max_body_bytes", "runtime.maxBodyBytes", 1024, 1_073_741_824),
    *bounds("runtime.batching.max_rows", "runtime.batching.maxRows", 1, 100_000),
    realm("boston-rf scoring", True),
    realm("boston-rf scoring", True, "nginx"),
    realm("x" * 64, True),
    realm("x" * 65, False),
    realm("a/b", False),
    realm("a/b", False, "nginx"),
    realm("a:b~c", False, "nginx"),
    realm('say "hi"', False),
    Case(
        "auth users and existing secret",
        {"service.auth.users": [MANIFEST_USER], "service.auth.existing_secret": "htpasswd"},
        {"auth.enabled": True, "auth.users": [BCRYPT_LINE], "auth.existingSecret": "htpasswd"},
        False,
        manifest_word="existing_secret",
        chart_word="existingSecret",
    ),
    Case(
        "auth without credentials",
        {"service.auth.enabled": True},
        {"auth.enabled": True},
        False,
        manifest_word="existing_secret",
        chart_word="existingSecret",
    ),
    Case(
        "auth existing secret name",
        {"service.auth.existing_secret": "Bad_Name"},
        {"auth.existingSecret": "Bad_Name", "auth.enabled": True},
        False,
    ),
    same("service.host", "ingress.host", "boston.example.com", True),
    same("service.host", "ingress.host", "Bad_Host", False),
    same("service.host", "ingress.host", ".".join(["a" * 50] * 6), False),
    same("service.host", "ingress.host", "10.0.0.1", False),
    same("service.host", "ingress.host", "10.0.0.256", True),  # not an IP: a DNS name
    same("service.host", "ingress.host", "010.0.0.1", False),  # the API server reads it as an IP
    same("service.ingress.flavor", "ingress.flavor", "haproxy", False),
    Case(
        "autoscaling min above max",
        {"service.autoscaling.min_replicas": 3, "service.autoscaling.max_replicas": 2},
        {"autoscaling.minReplicas": 3, "autoscaling.maxReplicas": 2},
        False,
    ),
    same("service.autoscaling.min_replicas", "autoscaling.minReplicas", 0, False),
    *bounds(
        "service.autoscaling.target_cpu", "autoscaling.targetCPUUtilizationPercentage", 1, 1_000
    ),
    *bounds(
        "service.autoscaling.target_memory",
        "autoscaling.targetMemoryUtilizationPercentage",
        1,
        1_000,
    ),
    same("service.tls.issuer.name", "tls.issuerRef.name", "Bad_Issuer", False),
    Case(
        "issuer kind",
        {"service.tls.issuer.name": "letsencrypt", "service.tls.issuer.kind": "Foo"},
        {"tls.issuerRef.name": "letsencrypt", "tls.issuerRef.kind": "Foo"},
        False,
        manifest_word="kind",
        chart_word="kind",
    ),
    Case(
        "url secret name",
        {"model.source": "url", "model.url_secret.name": "Bad_Secret"},
        {**URL_SOURCE, "model.url.existingSecret": "Bad_Secret"},
        False,
        manifest_word="name",
        chart_word="existingSecret",
    ),
    Case(
        "url source without a secret",
        {"model.source": "url"},
        URL_SOURCE,
        False,
        manifest_word="url_secret",
        chart_word="existingSecret",
    ),
    Case(
        "pvc claim name",
        {"model.source": "pvc", "model.pvc.claim_name": "Bad_Claim"},
        {"model.source": "pvc", "model.pvc.claimName": "Bad_Claim"},
        False,
        manifest_word="claim_name",
        chart_word="claimName",
    ),
    same("version", "model.version", "1.0.0-rc_1", True),
    same("version", "model.version", "1.0.0-", False),
    same("image.repository", "image.repository", "Models/Boston", False),
    same("image.tag", "image.tag", "-bad", False),
    same("image.tag", "image.tag", "1.0.0_a", True),
    same("image.tag", "image.tag", "1.0.0\n", False),
    same("runtime.batching.enabled", "runtime.batching.enabled", "false", False),
    same("runtime.batching.max_rows", "runtime.batching.maxRows", True, False),
    same("runtime.threads", "runtime.threads", "2", False),
    same("version", "model.version", "1.0.0\n", False),
    same("image.repository", "image.repository", "registry.io/team--x/model", True),
    same("image.repository", "image.repository", "registry.io/my__model", True),
    same("image.repository", "image.repository", "registry.io/my___model", False),
    same("image.repository", "image.repository", "registry.io/models/boston\n", False),
    same("service.host", "ingress.host", "boston.example.com\n", False),
    realm("boston-rf\n", False),
    same("service.ingress.class_name", "ingress.className", "nginx\n  defaultBackend: {}", False),
    same(
        "service.ingress.class_name",
        "ingress.className",
        "webapprouting.kubernetes.azure.com",
        True,
    ),
    Case(
        "url secret key",
        {
            "model.source": "url",
            "model.url_secret": {"name": "blob", "key": "url\n  optional: true"},
        },
        {
            **URL_SOURCE,
            "model.url.existingSecret": "blob",
            "model.url.key": "url\n  optional: true",
        },
        False,
        manifest_word="key",
        chart_word="key",
    ),
    *[
        Case(
            f"pvc sub path {sub_path!r}",
            {"model.source": "pvc", "model.pvc": {"claim_name": "models", "sub_path": sub_path}},
            {"model.source": "pvc", "model.pvc.claimName": "models", "model.pvc.subPath": sub_path},
            accepted,
            manifest_word="sub_path",
            chart_word="subPath",
        )
        for sub_path, accepted in [
            ("boston/v1/model.rds", True),
            ("/boston/model.rds", True),
            ("..hidden/...rds", True),
            ("../etc/passwd", False),
            ("boston/./model.rds", False),
            ("boston//model.rds", False),
            ("boston model.rds", False),
            ("model.rds\n- name: LD_PRELOAD", False),
        ]
    ],
]


def manifest_error(tmp_path: Path, dotted: dict[str, Any]) -> str | None:
    """load_manifest's error text for the base manifest plus these fields, or None if valid."""
    data = deep_merge(BASE_MANIFEST, nested(dotted))
    (tmp_path / "model.rds").write_bytes(b"RDX3\n")
    (tmp_path / "rmodel.yaml").write_text(yaml.safe_dump(data))
    try:
        load_manifest(tmp_path)
    except ManifestError as error:
        return str(error)
    return None


def chart_error(helm: str, dotted: dict[str, Any]) -> str | None:
    try:
        render_chart(nested(dotted), helm=helm)
    except HelmFailedError as error:
        return error.stderr
    return None


def last_key(dotted: dict[str, Any]) -> str:
    return next(iter(dotted)).rsplit(".", 1)[-1]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_manifest_and_chart_agree(helm, tmp_path, case: Case):
    from_manifest = manifest_error(tmp_path, case.manifest)
    from_chart = chart_error(helm, case.chart)
    if case.accepted:
        assert from_manifest is None, from_manifest
        assert from_chart is None, from_chart
        return
    assert from_manifest is not None, f"the manifest accepts {case.manifest}"
    assert from_chart is not None, f"the chart accepts {case.chart}"
    assert (case.manifest_word or last_key(case.manifest)) in from_manifest, from_manifest
    assert (case.chart_word or last_key(case.chart)) in from_chart, from_chart
