#!/usr/bin/env bash
# Proves the controller built by build.sh issues the chart's Certificate from a CA Issuer: starts
# its own etcd + kube-apiserver on free loopback ports in a temp dir (not the test bed's cluster),
# applies the cert-manager CRDs, renders the chart's Issuer (type ca) and Certificate, runs the
# controller and checks the Secret it writes is signed by the CA. Stops all it started on exit.
# Usage: bash testbed/cert-manager/prove.sh [CONTROLLER_BINARY]
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CONTROLLER=${1:-$ROOT/.cache/cert-manager/cert-manager-ca}
CRDS=${RMP_CRDS_DIR:-$ROOT/../shared/crds}/cert-manager
BIN=$ROOT/.bin
NS=rmp-cm
WORK=$(mktemp -d)
PIDS=()

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start NAME ARGS...: a daemon in its own session, no inherited descriptors beyond 0-2.
start() {
  local name=$1
  shift
  setsid "$@" </dev/null >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
}

wait_for() {
  local what=$1 tries=$2
  shift 2
  for _ in $(seq "$tries"); do "$@" >/dev/null 2>&1 && return; sleep 1; done
  echo "prove.sh: ERROR: $what not ready; log tail:" >&2
  tail -n 20 "$WORK"/*.log >&2
  exit 1
}

make_pki() {
  local pki=$WORK/pki
  mkdir -p "$pki" && cd "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=rmp-cm-cluster-ca \
    -keyout cluster-ca.key -out cluster-ca.crt 2>/dev/null
  sign_leaf apiserver /CN=kube-apiserver "subjectAltName=IP:127.0.0.1,DNS:localhost"
  sign_leaf admin "/O=system:masters/CN=admin" "extendedKeyUsage=clientAuth"
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  # The Issuer's CA: what the issued certificate must chain to.
  openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj /CN=rmp-cm-issuer-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout issuer-ca.key -out issuer-ca.crt 2>/dev/null
  cd - >/dev/null
}

sign_leaf() {
  openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA cluster-ca.crt -CAkey cluster-ca.key -CAcreateserial \
    -days 1 -extfile <(echo "$3") -out "$1.crt" 2>/dev/null
}

start_control_plane() {
  local pki=$WORK/pki etcd_port peer_port api_port
  etcd_port=$(free_port) peer_port=$(free_port) api_port=$(free_port)
  start etcd "$BIN/etcd" --data-dir="$WORK/etcd" --listen-client-urls="http://127.0.0.1:$etcd_port" \
    --advertise-client-urls="http://127.0.0.1:$etcd_port" --listen-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="default=http://127.0.0.1:$peer_port"
  wait_for etcd 30 curl -fsS "http://127.0.0.1:$etcd_port/health"
  start kube-apiserver "$BIN/kube-apiserver" --bind-address=127.0.0.1 --advertise-address=127.0.0.1 \
    --secure-port="$api_port" --etcd-servers="http://127.0.0.1:$etcd_port" --cert-dir="$pki" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/cluster-ca.crt" --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$pki/sa.pub" \
    --service-account-signing-key-file="$pki/sa.key" --service-cluster-ip-range=10.97.0.0/16
  export KUBECONFIG=$WORK/admin.kubeconfig
  kubectl config set-cluster c --server="https://127.0.0.1:$api_port" \
    --certificate-authority="$pki/cluster-ca.crt" --embed-certs >/dev/null
  kubectl config set-credentials admin --client-certificate="$pki/admin.crt" \
    --client-key="$pki/admin.key" --embed-certs >/dev/null
  kubectl config set-context c --cluster=c --user=admin >/dev/null
  kubectl config use-context c >/dev/null
  wait_for kube-apiserver 90 kubectl get --raw /readyz
}

apply_issuer_and_certificate() {
  kubectl apply --server-side -f "$CRDS" >/dev/null
  kubectl wait --for=condition=Established --timeout=60s crd --all >/dev/null
  kubectl create namespace "$NS" >/dev/null
  kubectl -n "$NS" create secret tls rmp-ca --cert="$WORK/pki/issuer-ca.crt" \
    --key="$WORK/pki/issuer-ca.key" >/dev/null
  "$BIN/helm" template boston "$ROOT/chart" -n "$NS" --set ingress.host=model.rmp.test \
    --set tls.issuer.create=true --set tls.issuer.type=ca --set tls.issuer.ca.secretName=rmp-ca \
    --show-only templates/issuer.yaml --show-only templates/certificate.yaml >"$WORK/tls.yaml"
  kubectl apply -f "$WORK/tls.yaml"
}

check_issued_secret() {
  local secret
  secret=$(kubectl -n "$NS" get certificate -o jsonpath='{.items[0].spec.secretName}')
  kubectl -n "$NS" get secret "$secret" -o jsonpath='{.data.tls\.crt}' | base64 -d >"$WORK/tls.crt"
  openssl verify -CAfile "$WORK/pki/issuer-ca.crt" "$WORK/tls.crt"
  kubectl -n "$NS" get secret "$secret" -o jsonpath='{.data.ca\.crt}' | base64 -d |
    cmp - "$WORK/pki/issuer-ca.crt" || { echo "prove.sh: ERROR: ca.crt is not the CA" >&2; exit 1; }
  openssl x509 -in "$WORK/tls.crt" -noout -subject -issuer -ext subjectAltName -enddate
  openssl x509 -in "$WORK/tls.crt" -noout -text | grep -q 'id-ecPublicKey' ||
    { echo "prove.sh: ERROR: key is not ECDSA as the chart asks" >&2; exit 1; }
}

main() {
  [ -x "$CONTROLLER" ] || { echo "prove.sh: ERROR: no $CONTROLLER; run build.sh first" >&2; exit 1; }
  export PATH="$BIN:$PATH"
  make_pki
  start_control_plane
  apply_issuer_and_certificate
  local started=$SECONDS
  start controller "$CONTROLLER" --kubeconfig="$KUBECONFIG"
  kubectl -n "$NS" wait --for=condition=Ready --timeout=120s issuer,certificate --all ||
    { tail -n 40 "$WORK/controller.log" >&2; exit 1; }
  echo "Issuer and Certificate Ready $((SECONDS - started))s after the controller started"
  kubectl -n "$NS" get issuer,certificate,certificaterequest
  check_issued_secret
  mkdir -p "$ROOT/.cache/cert-manager"
  cp "$WORK/controller.log" "$ROOT/.cache/cert-manager/prove-controller.log"
}

main "$@"
