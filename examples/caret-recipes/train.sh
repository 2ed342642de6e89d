#!/usr/bin/env bash
# Trains the caret-recipes example inside the image it is served from: the rmodelpack trixie
# base (R 4.5) plus Debian's r-cran-caret and r-cran-recipes, so no caret is needed on this
# machine. Writes model.rds beside this script. Usage: bash examples/caret-recipes/train.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
base=rmodelpack/r-base:trixie
trainer=rmodelpack-train/caret-recipes:trixie

if ! docker image inspect "$base" >/dev/null 2>&1; then
  (cd "$root" && "${PYTHON:-$root/.venv/bin/python}" -c 'from rmodelpack.build import build_base_image; build_base_image()') \
    || docker build -t "$base" "$root/base-images/debian"
fi
docker build -q -t "$trainer" - >/dev/null <<DOCKERFILE
FROM $base
USER root
RUN apt-get update \\
 && apt-get install -y --no-install-recommends r-cran-caret r-cran-recipes \\
 && rm -rf /var/lib/apt/lists/*
USER 10001:10001
DOCKERFILE
docker run --rm --network none --user "$(id -u):$(id -g)" -v "$here:/example" -w /example \
  "$trainer" Rscript --vanilla fit.R
