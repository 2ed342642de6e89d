#!/usr/bin/env bash
# The README's main command: from a fresh machine to the boston-rf model answering on 127.0.0.1.
# Sets up everything (ci/setup.sh), builds the image, pushes it to the local registry (the
# stand-in for Azure Container Registry), runs it hardened as in Kubernetes and calls it the way
# the Azure reference's clients do (POST /score) and the new way (POST /predict).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${PORT:-8080}"
NAME=rmodelpack-demo-boston

bash "$ROOT/ci/setup.sh"
export PATH="$ROOT/.bin:$ROOT/.venv/bin:$PATH"
# Basic-auth passwords come from the environment and only their bcrypt hashes are rendered.
export BOSTON_SCORER_PASSWORD="${BOSTON_SCORER_PASSWORD:-$(openssl rand -hex 16)}"
cd "$ROOT"

printf '\n==> rmodelpack build examples/boston-rf --push\n'
rmodelpack build examples/boston-rf --push

printf '\n==> rmodelpack serve examples/boston-rf --docker (on 127.0.0.1:%s)\n' "$PORT"
docker rm -f "$NAME" >/dev/null 2>&1 || true
rmodelpack serve examples/boston-rf --docker --detach --name "$NAME" --port "$PORT"
for _ in $(seq 1 90); do
  curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 1
done
curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null || { docker logs "$NAME" | tail -n 40; exit 1; }

printf '\n==> POST /score (the reference request shape)\n'
curl -fsS -H 'Content-Type: application/json' --data @examples/boston-rf/requests/score.json \
  "http://127.0.0.1:$PORT/score"
printf '\n\n==> POST /predict\n'
curl -fsS -H 'Content-Type: application/json' --data @examples/boston-rf/requests/predict.json \
  "http://127.0.0.1:$PORT/predict"
printf '\n\n==> POST /predict with a bad row (answers 422, never 500)\n'
curl -sS -H 'Content-Type: application/json' --data '[{"crim": "high"}]' \
  "http://127.0.0.1:$PORT/predict" || true
printf '\n\nThe service keeps running as container %s on http://127.0.0.1:%s (docs: /docs).\n' "$NAME" "$PORT"
printf 'Stop it with: docker stop %s\n' "$NAME"
printf 'Chart values for AKS: examples/boston-rf/.rmodelpack/values.yaml; deploy with: rmodelpack deploy examples/boston-rf -n models\n'
