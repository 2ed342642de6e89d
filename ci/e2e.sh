#!/usr/bin/env bash
# End-to-end suite against a real (offline-built) Kubernetes control plane with a kwok fake node.
#   bash ci/e2e.sh            build/start the cluster, run tests/cluster, leave the cluster up
#   bash ci/e2e.sh --down     ... and stop it and delete its state afterwards
# Extra arguments go to pytest (e.g. -k probe). See docs/cluster.md.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$ROOT/.bin:$ROOT/.venv/bin:$PATH"
cd "$ROOT"

down=false
args=()
for arg in "$@"; do
  if [ "$arg" = "--down" ]; then down=true; else args+=("$arg"); fi
done

started=$SECONDS
bash "$ROOT/ci/cluster.sh" up || exit 1
eval "$(bash "$ROOT/ci/cluster.sh" env)"
"$ROOT/.venv/bin/python" -m pytest tests/cluster -m cluster "${args[@]}"
status=$?
[ "$status" -eq 5 ] && { echo "ci/e2e.sh: pytest collected no tests; that is a failure" >&2; status=1; }
if [ "$status" -ne 0 ]; then
  echo "ci/e2e.sh: failed; component logs are in $(dirname "${KUBECONFIG}")/logs" >&2
fi
"$down" && bash "$ROOT/ci/cluster.sh" down
echo "e2e took $((SECONDS - started))s"
exit "$status"
