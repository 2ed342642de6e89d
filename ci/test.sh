#!/usr/bin/env bash
# The README's test command. Puts the project's tools first on PATH and runs the whole suite.
# pytest's exit 5 ("no tests collected") is a failure here, like any other non-zero exit.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$ROOT/.bin:$ROOT/.venv/bin:$PATH"
cd "$ROOT"
"$ROOT/.venv/bin/python" -m pytest "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "ci/test.sh: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit "$status"
