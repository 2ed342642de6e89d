#!/usr/bin/env bash
# Builds the CA-only cert-manager controller (main.go) into .cache/cert-manager/cert-manager-ca.
# Usage: bash testbed/cert-manager/build.sh [OUTPUT]
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${1:-$ROOT/.cache/cert-manager/cert-manager-ca}

command -v go >/dev/null || { echo "build.sh: ERROR: Go >= 1.26 is needed" >&2; exit 1; }
mkdir -p "$(dirname "$OUT")"
started=$SECONDS
(cd "$HERE" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false nice -n 10 \
  go build -trimpath -ldflags "-s -w" -o "$OUT" .)
echo "built $OUT ($(du -h "$OUT" | cut -f1)) in $((SECONDS - started))s"
