"""render_chart(): the real `helm template` of chart/, parsed into Kubernetes objects.

Modelled on airflow's helm-tests `render_chart`: values go to a temporary file, helm's stderr is
kept in the error, empty documents are dropped.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml

CHART_DIR = Path(__file__).resolve().parents[2] / "chart"
SCENARIO_DIR = CHART_DIR / "ci"
RELEASE = "release"
NAMESPACE = "models"
DEFAULT_KUBE_VERSION = "1.32.0"
KUBE_VERSIONS = ["1.32.0", "1.35.0"]


class HelmFailedError(subprocess.CalledProcessError):
    """`helm` exited non-zero; str() carries its stderr."""

    def __str__(self) -> str:
        return f"{' '.join(map(str, self.cmd))} failed ({self.returncode}):\n{self.stderr}"


def scenario_files() -> dict[str, Path]:
    """chart/ci/<name>-values.yaml by scenario name (what ct lint also runs)."""
    return {
        p.name.removesuffix("-values.yaml"): p for p in sorted(SCENARIO_DIR.glob("*-values.yaml"))
    }


SCENARIOS = ["default", *scenario_files()]


def run_helm(args: Sequence[str], helm: str = "helm") -> str:
    proc = subprocess.run([helm, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise HelmFailedError(proc.returncode, [helm, *args], proc.stdout, proc.stderr)
    return proc.stdout


def render_text(
    values: dict | None = None,
    values_files: Sequence[Path] = (),
    show_only: Sequence[str] | None = None,
    helm: str = "helm",
    kube_version: str = DEFAULT_KUBE_VERSION,
    chart: str | Path = CHART_DIR,
    extra_args: Sequence[str] = (),
) -> str:
    """The manifest text `helm template` prints."""
    with tempfile.TemporaryDirectory(prefix="rmp-chart-") as tmp:
        args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE]
        args += ["--kube-version", kube_version, *extra_args]
        for path in values_files:
            args += ["--values", str(path)]
        if values:
            extra = Path(tmp) / "values.yaml"
            extra.write_text(yaml.safe_dump(values))
            args += ["--values", str(extra)]
        for template in show_only or ():
            args += ["--show-only", template]
        return run_helm(args, helm=helm)


def parse_docs(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render_chart(
    values: dict | None = None,
    show_only: Sequence[str] | None = None,
    helm: str = "helm",
    kube_version: str = DEFAULT_KUBE_VERSION,
    values_files: Sequence[Path] = (),
) -> list[dict]:
    """The rendered objects; raises HelmFailedError with helm's stderr on failure."""
    text = render_text(values, values_files, show_only, helm, kube_version)
    return parse_docs(text)


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    """The single object of that kind (and name); fails loudly when there is not exactly one."""
    found = [d for d in by_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    """Every pod spec in a render: workload templates and bare Pods (the helm test hook)."""
    specs = []
    for doc in docs:
        if doc["kind"] == "Pod":
            specs.append((f"Pod/{doc['metadata']['name']}", doc["spec"]))
        elif doc["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            specs.append(
                (f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"])
            )
    return specs
