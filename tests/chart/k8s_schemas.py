"""kubeconform schema locations for the chart tests, all offline.

- Kubernetes: kubernetes-validate's bundled "local-strict" schemas. Their $refs point at
  "/api/_definitions.json" under an https $id, which kubeconform's file loader cannot follow, so
  a copy with file-relative refs (and no $id) is written once per session; content is unchanged.
- Traefik and cert-manager: /work/shared/crds/jsonschema (see its README).
- KEDA ScaledObject and ServiceMonitor: ci/chart-schemas (made by ci/chart-crd-schemas.sh).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import kubernetes_validate

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLED = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
SHARED_CRDS = REPO_ROOT.parent / "shared" / "crds" / "jsonschema"
PROJECT_CRDS = REPO_ROOT / "ci" / "chart-schemas"
K8S_FILE = (
    "{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}/"
    "{{ .ResourceKind }}{{ .KindSuffix }}.json"
)
CRD_FILE = "{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"


def shared_crds_dir() -> Path:
    """shared/ sits beside the repo in CI's clone; /work/shared on a developer machine."""
    for candidate in (SHARED_CRDS, Path("/work/shared/crds/jsonschema")):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no CRD schemas at {SHARED_CRDS} (shared/ must sit beside the repo)")


def write_kubeconform_copy(kube_version: str, out: Path) -> Path:
    """The bundled strict schemas of one Kubernetes version, refs made file-relative."""
    folder = f"v{kube_version}-local-strict"
    target = out / folder
    target.mkdir(parents=True, exist_ok=True)
    for source in (BUNDLED / folder).glob("*.json"):
        text = source.read_text().replace('"/api/_definitions.json#', '"_definitions.json#')
        schema = json.loads(text)
        schema.pop("$id", None)
        (target / source.name).write_text(json.dumps(schema))
    return out


def schema_locations(k8s_root: Path) -> list[str]:
    return [
        f"{k8s_root}/{K8S_FILE}",
        f"{shared_crds_dir()}/{CRD_FILE}",
        f"{PROJECT_CRDS}/{CRD_FILE}",
    ]


def run_kubeconform(kubeconform: str, root: Path, kube_version: str, manifests: str) -> dict:
    """kubeconform -strict's JSON report on the manifests, plus its exit code."""
    args = [kubeconform, "-strict", "-summary", "-output", "json"]
    args += ["-kubernetes-version", kube_version]
    for location in schema_locations(root):
        args += ["-schema-location", location]
    proc = subprocess.run(
        [*args, "-"], input=manifests, capture_output=True, text=True, check=False
    )
    report = json.loads(proc.stdout)
    report["returncode"] = proc.returncode
    return report
