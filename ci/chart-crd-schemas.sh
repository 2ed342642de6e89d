#!/usr/bin/env bash
# Derives the kubeconform JSON schemas that /work/shared/crds lacks (KEDA ScaledObject,
# prometheus-operator ServiceMonitor) from the CRDs shipped inside their Go modules, with the same
# strict conversion as shared/crds/jsonschema: the version's openAPIV3Schema unchanged, plus
# additionalProperties: false on every object schema that has properties and neither
# additionalProperties nor x-kubernetes-preserve-unknown-fields. Output: ci/chart-schemas/.
# Azure Monitor's managed Prometheus serves the same ServiceMonitor schema under the group
# azmonitoring.coreos.com, so that file is a copy with the group renamed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/ci/chart-schemas"
KEDA=github.com/kedacore/keda/v2@v2.16.1
PROMOP=github.com/prometheus-operator/prometheus-operator@v0.79.2

module_dir() { (cd "$(mktemp -d)" && go mod download -json "$1" | "$ROOT/.venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'); }

keda_dir=$(module_dir "$KEDA")
promop_dir=$(module_dir "$PROMOP")

"$ROOT/.venv/bin/python" - "$OUT" \
  "$keda_dir/config/crd/bases/keda.sh_scaledobjects.yaml=keda.sh" \
  "$promop_dir/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml=monitoring.coreos.com" \
  "$promop_dir/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml=azmonitoring.coreos.com" <<'PY'
import json
import sys
from pathlib import Path

import yaml


def strict(node):
    if isinstance(node, dict):
        for value in node.values():
            strict(value)
        is_object = node.get("type") == "object" and "properties" in node
        open_ended = "additionalProperties" in node or node.get("x-kubernetes-preserve-unknown-fields")
        if is_object and not open_ended:
            node["additionalProperties"] = False
    elif isinstance(node, list):
        for item in node:
            strict(item)
    return node


out = Path(sys.argv[1])
for arg in sys.argv[2:]:
    crd_path, group = arg.rsplit("=", 1)
    crd = yaml.safe_load(Path(crd_path).read_text())
    kind = crd["spec"]["names"]["kind"].lower()
    for version in crd["spec"]["versions"]:
        schema = strict(version["schema"]["openAPIV3Schema"])
        target = out / group / f"{kind}_{version['name']}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        print(f"{target.relative_to(out)} <- {Path(crd_path).name}")
PY
