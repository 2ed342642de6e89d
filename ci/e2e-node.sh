#!/usr/bin/env bash
# The real-node suite alone (tests/cluster_node; also part of the default `bash ci/test.sh` run).
# Its fixtures build what is missing, start the control plane and the node, and take down at the
# end what they started (tests/cluster/lifecycle.py).
#   bash ci/e2e-node.sh           run tests/cluster_node
#   bash ci/e2e-node.sh --keep    ... and leave the cluster and the node up (RMP_KEEP_CLUSTER=1)
# Extra arguments go to pytest. See docs/cluster.md, "Stage 2".
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$ROOT/.bin:$ROOT/.venv/bin:$PATH"
cd "$ROOT"

args=()
for arg in "$@"; do
  if [ "$arg" = "--keep" ]; then export RMP_KEEP_CLUSTER=1; else args+=("$arg"); fi
done

started=$SECONDS
"$ROOT/.venv/bin/python" -m pytest tests/cluster_node -m node "${args[@]}"
status=$?
[ "$status" -eq 5 ] && { echo "ci/e2e-node.sh: pytest collected no tests; that is a failure" >&2; status=1; }
if [ "$status" -ne 0 ]; then
  echo "ci/e2e-node.sh: failed; logs of what the tests took down are in $ROOT/.cache/last-logs/" >&2
fi
echo "e2e-node took $((SECONDS - started))s"
exit "$status"
