"""Deploy rendered values with helm (as a subprocess): upgrade --install, or a dry run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rmodelpack.exceptions import HelmError, ToolNotFound, UsageError

DryRun = str  # "client" (offline, helm template) | "server" (the API server validates)


@dataclass(frozen=True)
class DeployResult:
    release: str
    command: tuple[str, ...]
    output: str


def chart_path() -> Path:
    """The bundled chart: the copy inside the installed package, else a checkout's chart/."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_chart", here.parent / "chart"):
        if (candidate / "Chart.yaml").is_file():
            return candidate
    raise ToolNotFound(
        "the rmodelpack chart is missing from this installation; give a chart path or an "
        "oci:// reference instead",
        parameter="chart",
    )


def helm_binary() -> str:
    name = os.environ.get("RMODELPACK_HELM", "helm")
    path = shutil.which(name)
    if path is None:
        raise ToolNotFound(
            f"'{name}' is not installed or not on PATH; install helm 3.8+ (https://helm.sh) "
            "or point RMODELPACK_HELM at a helm binary"
        )
    return path


def helm_major(helm: str) -> int:
    result = _run([helm, "version", "--template", "{{.Version}}"], what="helm version")
    match = re.match(r"v(\d+)", result.strip())
    if not match:
        raise HelmError(f"cannot read helm's version from {result!r}")
    return int(match.group(1))


def _run(command: Sequence[str], *, what: str) -> str:
    try:
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise ToolNotFound(f"{command[0]}: {exc.strerror}") from exc
    if completed.returncode != 0:
        raise HelmError(_explain(what, completed.stderr or completed.stdout))
    return completed.stdout


def _explain(what: str, stderr: str) -> str:
    message = stderr.strip()
    if "cluster unreachable" in message or "connection refused" in message:
        hint = (
            "no Kubernetes cluster answers: check KUBECONFIG / `kubectl config current-context` "
            "(for AKS: az aks get-credentials --resource-group RG --name CLUSTER), "
            "or render offline with a client dry run"
        )
        return f"{what} failed: {message}\n  fix: {hint}"
    return f"{what} failed:\n{message}"


def helm_command(
    helm: str,
    *,
    release: str,
    values: Path,
    chart: str,
    namespace: str | None,
    dry_run: DryRun | None,
    timeout: str,
    extra_args: Sequence[str] = (),
) -> list[str]:
    if dry_run == "client":
        command = [helm, "template", release, chart, "-f", str(values)]
    else:
        command = [helm, "upgrade", "--install", release, chart, "-f", str(values)]
        if dry_run == "server":
            command.append("--dry-run=server")
        elif helm_major(helm) >= 4:
            command += ["--rollback-on-failure", "--wait", "--timeout", timeout]
        else:
            command += ["--atomic", "--wait", "--timeout", timeout]
    if namespace:
        command += ["--namespace", namespace]
        if command[1] == "upgrade":
            command.append("--create-namespace")
    return command + list(extra_args)


def deploy(
    values: Path,
    *,
    release: str,
    namespace: str | None = None,
    chart: str | None = None,
    dry_run: DryRun | None = None,
    timeout: str = "10m",
    extra_args: Sequence[str] = (),
) -> DeployResult:
    """helm upgrade --install (atomic, waits) of the chart with ``values``; or a dry run."""
    if dry_run not in (None, "client", "server"):
        raise UsageError(f"a dry run is 'client' or 'server', not {dry_run!r}", parameter="dry_run")
    if not values.is_file():
        raise UsageError(f"values file {values} does not exist; render the manifest first")
    helm = helm_binary()
    command = helm_command(
        helm,
        release=release,
        values=values,
        chart=chart or str(chart_path()),
        namespace=namespace,
        dry_run=dry_run,
        timeout=timeout,
        extra_args=extra_args,
    )
    output = _run(command, what=" ".join(command[:3]))
    return DeployResult(release, tuple(command), output)
