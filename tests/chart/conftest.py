"""Fixtures for the chart tests: tools, and one cached render per scenario."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import require_tool as root_require_tool

from chart.blob_server import MODEL_BYTES, make_self_signed_cert, serve, tls_context
from chart.helm_template import KUBE_VERSIONS, parse_docs, render_text, scenario_files
from chart.k8s_schemas import write_kubeconform_copy


@pytest.fixture(scope="session")
def require_tool() -> Callable[[str], str]:
    """tests/conftest.py's require_tool as a fixture (skip when missing; a failure under CI)."""
    return root_require_tool


@pytest.fixture(scope="session")
def helm(require_tool) -> str:
    return require_tool("helm")


@pytest.fixture(scope="session")
def scenario_text(helm) -> Callable[[str], str]:
    """helm template output of a scenario ("default" = chart defaults), rendered once a session."""
    cache: dict[str, str] = {}
    files = scenario_files()

    def render(name: str) -> str:
        if name not in cache:
            values_files = [files[name]] if name != "default" else []
            cache[name] = render_text(values_files=values_files, helm=helm)
        return cache[name]

    return render


@pytest.fixture(scope="session")
def scenario_docs(scenario_text) -> Callable[[str], list[dict]]:
    return lambda name: parse_docs(scenario_text(name))


@pytest.fixture(scope="session")
def kubeconform(require_tool) -> str:
    return require_tool("kubeconform")


@pytest.fixture(scope="session")
def k8s_schema_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("k8s-schemas")
    for version in KUBE_VERSIONS:
        write_kubeconform_copy(version, root)
    return root


# --- local blob stores for the model download (fetch-model.sh) -----------------------------------


@pytest.fixture(scope="session")
def blob_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("blob")
    (root / "model.rds").write_bytes(MODEL_BYTES)
    return root


@pytest.fixture(scope="session")
def model_server(blob_root) -> Iterator[str]:
    """Plain-http blob store."""
    yield from serve(blob_root)


@pytest.fixture(scope="session")
def self_signed_cert(require_tool, tmp_path_factory) -> tuple[Path, Path]:
    return make_self_signed_cert(require_tool("openssl"), tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def https_server(blob_root, self_signed_cert, model_server) -> Iterator[str]:
    """HTTPS blob store; its /redirect.rds redirects to the plain-http store's model."""
    tls = tls_context(*self_signed_cert)
    yield from serve(blob_root, tls, redirect_target=f"{model_server}/model.rds")
