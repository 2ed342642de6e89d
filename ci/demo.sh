#!/usr/bin/env bash
# The README's main command: from a fresh machine to the boston-rf model answering on 127.0.0.1.
# Sets up only what it uses (`ci/setup.sh demo`: no helm, no Kubernetes), builds the image,
# pushes it to the local registry (the stand-in for Azure Container Registry), runs it hardened
# as the chart does and calls it the way the Azure reference's clients do (POST /score) and the
# new way (POST /predict). It ends with where the chart values are and the command deploying them.
#
#   PORT=8080                          the local port (default: 8080, or a free one if it is taken)
#   DEMO_CONTAINER=rmodelpack-demo-boston   the container's name
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NAME="${DEMO_CONTAINER:-rmodelpack-demo-boston}"
EXAMPLE=examples/boston-rf
started=$SECONDS

step() { printf '\n==> %s\n' "$*"; }

port_is_free() {
  python3 -c 'import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# show_call PATH FILE: prints the curl command, runs it and prints the status and the answer.
show_call() {
  local path=$1 data=$2
  printf '$ curl -H "Content-Type: application/json" --data %s http://127.0.0.1:%s%s\n' \
    "${data}" "$PORT" "$path"
  curl -sS -w '\n(HTTP %{http_code})\n' -H 'Content-Type: application/json' --data "$data" \
    "http://127.0.0.1:$PORT$path"
}

bash "$ROOT/ci/setup.sh" demo
setup_seconds=$((SECONDS - started))
export PATH="$ROOT/.venv/bin:$PATH"
# Basic-auth passwords come from the environment and only their bcrypt hashes are rendered.
export BOSTON_SCORER_PASSWORD="${BOSTON_SCORER_PASSWORD:-$(openssl rand -hex 16)}"
cd "$ROOT"

if [ -z "${PORT:-}" ]; then
  PORT=8080
  port_is_free "$PORT" || PORT=$(free_port)
fi

step "rmodelpack build $EXAMPLE --push"
rmodelpack build "$EXAMPLE" --push

step "rmodelpack serve $EXAMPLE --docker (hardened as in Kubernetes, on 127.0.0.1:$PORT)"
docker rm -f "$NAME" >/dev/null 2>&1 || true
rmodelpack serve "$EXAMPLE" --docker --detach --name "$NAME" --port "$PORT"
for _ in $(seq 1 90); do
  curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 1
done
curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null || { docker logs "$NAME" 2>&1 | tail -n 40; exit 1; }

step "POST /score: the Azure reference's request ({\"df\": rows}) and answer (a bare array)"
show_call /score "@$EXAMPLE/requests/score.json"
step "POST /predict: rows in, {\"predictions\": [...]} out, in input order"
show_call /predict "@$EXAMPLE/requests/predict.json"
step "POST /predict with a bad row: every problem listed, 4xx and never 500"
show_call /predict '[{"crim": "high"}]'

values="$EXAMPLE/.rmodelpack/values.yaml"
cat <<EOF

==> What you have now
  service   container $NAME on http://127.0.0.1:$PORT (docs: /docs, metrics: /metrics);
            stop it with: docker stop $NAME
  values    $values: the chart values for AKS (image, auth, TLS, autoscaling); image:
$(sed -n '/^image:/,/^[^ ]/{/^  /s/^/              /p}' "$values")
  auth      user scorer, password $BOSTON_SCORER_PASSWORD (from BOSTON_SCORER_PASSWORD; only its
            bcrypt hash is in the values)
  deploy    .venv/bin/rmodelpack deploy $values -n models
            (needs helm 3.8+, a kubeconfig and image.repository set to a registry your cluster
            pulls from, e.g. Azure Container Registry: docs/aks.md walks through it on AKS)
  preview   bash ci/setup.sh helm && PATH=.bin:\$PATH .venv/bin/rmodelpack deploy $values --dry-run
            (the Kubernetes objects, offline)

demo took $((SECONDS - started))s, of which ci/setup.sh demo ${setup_seconds}s
EOF
