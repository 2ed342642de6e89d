#!/usr/bin/env bash
# The test bed's suites on their own (both are also part of the default `bash ci/test.sh` run).
#   bash testbed/e2e.sh            tests/cluster: the control plane with kwok nodes
#   bash testbed/e2e.sh --node     tests/cluster_node: the real node (kubelet, Traefik, HPA, ...)
#   --keep   leave the control plane (and node) up afterwards (RMP_KEEP_CLUSTER=1)
#   --down   take them down afterwards, even when they were already up before
# Without --keep or --down the machine is left as it was found: the tests' fixtures build what is
# missing, start what is not running and take down only what they started
# (tests/cluster/lifecycle.py). Other arguments go to pytest (e.g. -k probe). See docs/cluster.md.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$ROOT/.bin:$ROOT/.venv/bin:$PATH"
cd "$ROOT"

suite=tests/cluster marker=cluster down=false args=()
for arg in "$@"; do
  case "$arg" in
    --node) suite=tests/cluster_node marker=node ;;
    --keep) export RMP_KEEP_CLUSTER=1 ;;
    --down) down=true ;;
    *) args+=("$arg") ;;
  esac
done

started=$SECONDS
"$ROOT/.venv/bin/python" -m pytest "$suite" -m "$marker" "${args[@]}"
status=$?
[ "$status" -eq 5 ] && { echo "testbed/e2e.sh: pytest collected no tests; that is a failure" >&2; status=1; }
if [ "$status" -ne 0 ]; then
  echo "testbed/e2e.sh: failed; logs are in .cache/{cluster,node}/logs, or .cache/last-logs/ for what the tests took down" >&2
fi
if "$down"; then
  bash "$ROOT/testbed/node.sh" down
  bash "$ROOT/testbed/cluster.sh" down
fi
echo "testbed/e2e.sh: $suite took $((SECONDS - started))s"
exit "$status"
