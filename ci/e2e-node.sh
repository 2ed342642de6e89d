#!/usr/bin/env bash
# End-to-end suite on the real node (issue 8, stage 2): a kubelet on its own containerd beside
# the kwok nodes, running the boston-rf example for real. Not part of ci/test.sh.
#   bash ci/e2e-node.sh           start cluster + node, run tests/cluster_node, take the node down
#   bash ci/e2e-node.sh --keep    ... and leave the node up (tests/cluster expects only kwok nodes)
# Extra arguments go to pytest. See docs/cluster.md, "Stage 2".
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$ROOT/.bin:$ROOT/.venv/bin:$PATH"
cd "$ROOT"

keep=false
args=()
for arg in "$@"; do
  if [ "$arg" = "--keep" ]; then keep=true; else args+=("$arg"); fi
done

started=$SECONDS
bash "$ROOT/ci/node.sh" up || exit 1
eval "$(bash "$ROOT/ci/node.sh" env)"
RMP_NODE_E2E=1 "$ROOT/.venv/bin/python" -m pytest tests/cluster_node -m node "${args[@]}"
status=$?
[ "$status" -eq 5 ] && { echo "ci/e2e-node.sh: pytest collected no tests; that is a failure" >&2; status=1; }
if [ "$status" -ne 0 ]; then
  echo "ci/e2e-node.sh: failed; kubelet/containerd logs are in $ROOT/.cache/node/logs" >&2
fi
"$keep" || bash "$ROOT/ci/node.sh" down
echo "e2e-node took $((SECONDS - started))s"
exit "$status"
