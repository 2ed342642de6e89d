"""helm package + push to the local OCI registry, then render the chart back from it."""

from __future__ import annotations

import time

import pytest
import yaml

from chart.helm_template import CHART_DIR, parse_docs, render_text, run_helm

pytestmark = [pytest.mark.helm, pytest.mark.registry]


def test_chart_round_trips_through_the_oci_registry(helm, registry, tmp_path):
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    # A unique prerelease version per run: pushing the same version twice is not an error, but a
    # fresh one proves this run's push is what comes back.
    version = f"{chart['version']}-test.{time.time_ns()}"
    run_helm(["package", str(CHART_DIR), "--version", version, "-d", str(tmp_path)], helm=helm)
    package = tmp_path / f"{chart['name']}-{version}.tgz"
    assert package.exists()
    repo = f"oci://{registry}/charts"
    pushed = run_helm(["push", str(package), repo, "--plain-http"], helm=helm)
    assert f"{repo.removeprefix('oci://')}/{chart['name']}:{version}" in pushed + " "
    reference = f"{repo}/{chart['name']}"
    from_registry = render_text(
        chart=reference, extra_args=["--version", version, "--plain-http"], helm=helm
    )
    from_disk = render_text(helm=helm)
    normalize = lambda text: text.replace(version, chart["version"])  # noqa: E731
    assert parse_docs(normalize(from_registry)) == parse_docs(from_disk)
