#!/usr/bin/env bash
# The README's test command (and CI's, through .ci/run): sets up everything the suite needs
# (`ci/setup.sh all`; idempotent, seconds when nothing is missing), then runs the whole suite
# with pytest; pytest arguments narrow it (`bash ci/test.sh tests/test_cli.py -k version`).
# pytest's exit 5 ("no tests collected") is a failure here, like any other non-zero exit; under
# CI=true a skipped test is a failure too (tests/conftest.py).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if ! bash "$ROOT/ci/setup.sh" all; then
  echo "ci/test.sh: ci/setup.sh all failed; no tests ran" >&2
  exit 1
fi

export PATH="$ROOT/.bin:$ROOT/.venv/bin:$PATH"
cd "$ROOT"
"$ROOT/.venv/bin/python" -m pytest "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "ci/test.sh: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit "$status"
