#!/usr/bin/env bash
# A real Kubernetes control plane on loopback, built offline from the Go module proxy:
# etcd + kube-apiserver + kube-controller-manager + kube-scheduler, and kwok for fake nodes
# (pods on them become Running/Ready without a kubelet). Stage 1 of the test bed; used by
# tests/cluster/ and testbed/e2e.sh.
#
#   testbed/cluster.sh build    build (or reuse) the pinned binaries in .bin/
#   testbed/cluster.sh up       build, then start everything; does nothing when already healthy
#   testbed/cluster.sh status   print the health of each component; exit 1 when not healthy
#   testbed/cluster.sh down     stop everything and delete the state directory
#   testbed/cluster.sh env      print `export KUBECONFIG=...` for eval
#
# Everything listens on 127.0.0.1 only. State and logs: $RMP_CLUSTER_DIR (.cache/cluster).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT_NAME=testbed/cluster.sh
# shellcheck source=testbed/lib.sh
. "$ROOT/testbed/lib.sh"
use_state "$CLUSTER_STATE"
# Bumped when `up` starts components differently (flags, certificates): an older state is taken
# down and recreated instead of being reported healthy.
STATE_FORMAT=3

# Ports away from the well-known ones, so a developer's own etcd/apiserver keeps working, and
# above both the kernel's ephemeral range and the R workers' SCGI ports (10000 up to that range),
# so no test server can hold one first (tests/test_testbed_ports.py); node.sh's likewise.
ETCD_CLIENT_PORT=62379
ETCD_PEER_PORT=62380
CONTROLLER_MANAGER_PORT=61257
SCHEDULER_PORT=61259
NODE_NAME=kwok-node-0
GPU_NODE_NAME=kwok-gpu-node-0

# ---------------------------------------------------------------------------------------------
# Build: one `go build` per binary, cached in .bin/ by a version stamp (testbed/lib.sh).

build_kubernetes_command() {
  go_build_in "$K8S_DIR/kubernetes" "$BIN/$1" "k8s.io/kubernetes/cmd/$1" "$(kubernetes_ldflags)"
}

build_etcd() {
  if go_build_in "$K8S_DIR/etcd" "$BIN/etcd" . "-s -w"; then
    return
  fi
  # Fallback named by issue 8: Debian's etcd-server (3.4 in bookworm).
  [ -x /usr/bin/etcd ] || die "building etcd failed; the fallback is: apt-get install etcd-server"
  info "building etcd failed; using Debian's $(/usr/bin/etcd --version | head -n 1)"
  ln -sf /usr/bin/etcd "$BIN/etcd"
}

build_kwok() {
  go_install_as "$1" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "-s -w"
}

build_all() {
  step "Control-plane binaries (pinned, in .bin/)"
  command -v go >/dev/null || die "Go is needed to build the cluster binaries"
  command -v jq >/dev/null || die "jq is needed (apt-get install jq)"
  mkdir -p "$BIN"
  cached_build etcd "$ETCD_VERSION" build_etcd
  cached_build kwok "$KWOK_VERSION" build_kwok
  local name
  for name in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    cached_build "$name" "$KUBERNETES_VERSION" build_kubernetes_command
  done
}

# ---------------------------------------------------------------------------------------------
# PKI: one CA signs the serving cert and every client cert; EC P-256 keys (fast to generate).

generate_pki() {
  [ -f "$PKI/.complete" ] && return
  info "generating certificates and service-account keys (openssl, $PKI)"
  rm -rf "$PKI" && mkdir -p "$PKI" && chmod 700 "$PKI"
  new_key "$PKI/ca.key"
  openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=rmodelpack-dev-ca" -days 3650 \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out "$PKI/ca.crt" 2>/dev/null
  issue_cert apiserver "/CN=kube-apiserver" \
    "IP:127.0.0.1,IP:${SERVICE_CIDR%.0/*}.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  issue_cert admin "/O=system:masters/CN=rmodelpack-admin"
  issue_cert controller-manager "/CN=system:kube-controller-manager"
  issue_cert scheduler "/CN=system:kube-scheduler"
  # kwok acts for the fake kubelet (node status, leases, pod status), so it gets admin rights.
  issue_cert kwok "/O=system:masters/CN=kwok"
  # The aggregation layer (metrics-server's metrics.k8s.io): the API server authenticates to an
  # extension API server with this client certificate from its own CA, which that server trusts
  # for the X-Remote-User/-Group headers only.
  new_key "$PKI/front-proxy-ca.key"
  openssl req -x509 -new -key "$PKI/front-proxy-ca.key" -subj "/CN=rmodelpack-front-proxy-ca" \
    -days 3650 -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$PKI/front-proxy-ca.crt" 2>/dev/null
  issue_cert front-proxy-client "/CN=front-proxy-client" "" front-proxy-ca
  new_key "$PKI/service-account.key"
  openssl pkey -in "$PKI/service-account.key" -pubout -out "$PKI/service-account.pub" 2>/dev/null
  touch "$PKI/.complete"
}

# ---------------------------------------------------------------------------------------------
# Processes: testbed/lib.sh start_daemon (own session, no inherited descriptor), $RUN/NAME.pid,
# $LOGS/NAME.log.

# is_running NAME: the recorded pid still runs .bin/NAME.
is_running() { daemon_running "$1" "$BIN/$1"; }

# start NAME ARGS...: starts .bin/NAME as a daemon unless it already runs.
start() {
  local name=$1
  shift
  start_daemon "$name" "$BIN/$name" "$@"
}

insecure_ok() { curl -fsSk --max-time 3 "$1"; }

etcd_healthy() { curl -fsS --max-time 3 "http://127.0.0.1:$ETCD_CLIENT_PORT/health"; }
controller_manager_healthy() { insecure_ok "https://127.0.0.1:$CONTROLLER_MANAGER_PORT/healthz"; }
scheduler_healthy() { insecure_ok "https://127.0.0.1:$SCHEDULER_PORT/healthz"; }
# kwok serves no port here (one less listener); its health is the fake nodes' fresh heartbeat.
kwok_healthy() { is_running kwok; }

start_etcd() {
  # --unsafe-no-fsync: a throwaway test store; fsync on a shared disk only costs time.
  start etcd --name=rmodelpack-dev --data-dir="$STATE/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="rmodelpack-dev=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync=true --log-level=warn
  wait_until etcd "$LOGS/etcd.log" etcd_healthy
}

start_apiserver() {
  # Admission: the default plugin set (PodSecurity included), so a namespace's
  # pod-security.kubernetes.io/enforce label is enforced as on AKS.
  start kube-apiserver --bind-address=127.0.0.1 --advertise-address=127.0.0.1 \
    --secure-port="$APISERVER_PORT" --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --cert-dir="$PKI" --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" --authorization-mode=Node,RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/service-account.pub" \
    --service-account-signing-key-file="$PKI/service-account.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" --allow-privileged=true --profiling=false \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" \
    --proxy-client-key-file="$PKI/front-proxy-client.key"
  wait_until kube-apiserver "$LOGS/kube-apiserver.log" apiserver_ready
}

start_controller_manager() {
  start kube-controller-manager --bind-address=127.0.0.1 --secure-port="$CONTROLLER_MANAGER_PORT" \
    --kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --cert-dir="$STATE/controller-manager-certs" \
    --service-account-private-key-file="$PKI/service-account.key" --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --use-service-account-credentials=true --service-cluster-ip-range="$SERVICE_CIDR" \
    --leader-elect=false --profiling=false --horizontal-pod-autoscaler-sync-period=5s
  wait_until kube-controller-manager "$LOGS/kube-controller-manager.log" controller_manager_healthy
}

start_scheduler() {
  start kube-scheduler --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" \
    --kubeconfig="$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig="$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig="$STATE/scheduler.kubeconfig" \
    --cert-dir="$STATE/scheduler-certs" --leader-elect=false --profiling=false
  wait_until kube-scheduler "$LOGS/kube-scheduler.log" scheduler_healthy
}

# kwok's own binary ships no stages; these are the ones `kwokctl` uses by default, read from
# the pinned module (node: initialize + lease heartbeat; pod: ready, complete (Job pods), delete).
write_kwok_stages() {
  local dir stage
  dir=$(cd "$K8S_DIR/etcd" && go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | jq -r .Dir)
  [ -d "$dir" ] || die "cannot read sigs.k8s.io/kwok@$KWOK_VERSION from the Go module cache"
  for stage in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
    pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    echo "---"
    cat "$dir/kustomize/stage/$stage.yaml"
  done >"$STATE/kwok-stages.yaml"
}

start_kwok() {
  [ -s "$STATE/kwok-stages.yaml" ] || write_kwok_stages
  start kwok --kubeconfig="$STATE/kwok.kubeconfig" --config="$STATE/kwok-stages.yaml" \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake --node-ip=127.0.0.1 --cidr=10.244.0.0/16 \
    --node-lease-duration-seconds=40
}

# fake_node NAME EXTRA_LABELS EXTRA_ALLOCATABLE TAINTS: a Node object kwok manages (by annotation).
fake_node() {
  local name=$1 labels=$2 extra=$3 taints=$4
  local resources="{cpu: \"32\", memory: 256Gi, pods: \"110\", ephemeral-storage: 100Gi$extra}"
  # create, not apply: kwok patches the node's status at once, and a client-side apply racing it
  # once failed with ".status.conditions accessor error". An existing node is kept as it is.
  kube get node "$name" >/dev/null 2>&1 && return
  kube create -f - >/dev/null <<NODE
apiVersion: v1
kind: Node
metadata:
  name: $name
  annotations: {node.alpha.kubernetes.io/ttl: "0", kwok.x-k8s.io/node: fake}
  labels: {kubernetes.io/arch: amd64, kubernetes.io/hostname: $name, kubernetes.io/os: linux, type: kwok$labels}
spec:
  taints: $taints
status:
  allocatable: $resources
  capacity: $resources
  nodeInfo: {architecture: amd64, operatingSystem: linux, kubeletVersion: fake, kubeProxyVersion: fake}
NODE
}

# Capacity is generous: the fake nodes only have to admit every scenario's requests. The second
# node mirrors an AKS GPU pool (accelerator label, NVIDIA device resource, the pool's taint).
create_fake_nodes() {
  fake_node "$NODE_NAME" "" "" "[]"
  fake_node "$GPU_NODE_NAME" ", kubernetes.azure.com/accelerator: nvidia, agentpool: gpu" \
    ", nvidia.com/gpu: \"4\"" "[{key: sku, value: gpu, effect: NoSchedule}]"
  wait_until "node $NODE_NAME Ready" "$LOGS/kwok.log" node_ready "$NODE_NAME"
  wait_until "node $GPU_NODE_NAME Ready" "$LOGS/kwok.log" node_ready "$GPU_NODE_NAME"
}

shared_dir() {
  local dir=${RMP_SHARED_DIR:-$ROOT/../shared}
  [ -d "$dir/crds" ] || die "no CRDs at $dir/crds (set RMP_SHARED_DIR to the shared/ checkout)"
  echo "$dir"
}

install_crds() {
  local crds
  crds="$(shared_dir)/crds"
  kube apply --server-side --force-conflicts -f "$crds/traefik" -f "$crds/cert-manager" >/dev/null
  kube wait --for=condition=Established --timeout="${READY_TIMEOUT}s" crd \
    -l 'app.kubernetes.io/name=cert-manager' >/dev/null
  kube wait --for=condition=Established --timeout="${READY_TIMEOUT}s" \
    crd/middlewares.traefik.io crd/ingressroutes.traefik.io >/dev/null
  install_module_crds
  info "CRDs established: $(kube get crd -o name | wc -l) (Traefik, cert-manager, KEDA, ServiceMonitor)"
}

module_dir() {
  (cd "$K8S_DIR/etcd" && go mod download -json "$1") | jq -r .Dir
}

# The chart's optional kinds (KEDA ScaledObject, ServiceMonitor) are not in ../shared/crds;
# their upstream CRDs ship inside the projects' Go modules, so the proxy serves them.
install_module_crds() {
  local keda prom dir="$STATE/crds"
  keda=$(module_dir "github.com/kedacore/keda/v2@$KEDA_VERSION")
  prom=$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")
  mkdir -p "$dir"
  cp "$keda/config/crd/bases/keda.sh_scaledobjects.yaml" \
    "$keda/config/crd/bases/keda.sh_triggerauthentications.yaml" \
    "$prom/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" "$dir/"
  # Azure Managed Prometheus serves the same ServiceMonitor schema under the group
  # azmonitoring.coreos.com; this stand-in is the upstream CRD with only the group renamed.
  sed -e 's/servicemonitors\.monitoring\.coreos\.com/servicemonitors.azmonitoring.coreos.com/' \
    -e 's/^  group: monitoring\.coreos\.com$/  group: azmonitoring.coreos.com/' \
    "$dir/monitoring.coreos.com_servicemonitors.yaml" >"$dir/azmonitoring.coreos.com_servicemonitors.yaml"
  kube apply --server-side --force-conflicts -f "$dir" >/dev/null
  kube wait --for=condition=Established --timeout="${READY_TIMEOUT}s" \
    crd/scaledobjects.keda.sh crd/servicemonitors.monitoring.coreos.com \
    crd/servicemonitors.azmonitoring.coreos.com >/dev/null
}

# ---------------------------------------------------------------------------------------------
# Commands

components() { echo etcd kube-apiserver kube-controller-manager kube-scheduler kwok; }

healthy() {
  etcd_healthy && apiserver_ready && controller_manager_healthy && scheduler_healthy &&
    kwok_healthy && node_ready "$NODE_NAME" && node_ready "$GPU_NODE_NAME"
} >/dev/null 2>&1

state_is_current() { [ "$(cat "$STATE/.format" 2>/dev/null)" = "$STATE_FORMAT" ]; }

cmd_up() {
  local started=$SECONDS
  if [ -f "$KUBECONFIG_FILE" ] && state_is_current && healthy; then
    info "cluster healthy; nothing to do (KUBECONFIG=$KUBECONFIG_FILE)"
    return
  fi
  if [ -d "$STATE" ] && ! state_is_current; then
    info "state in $STATE is from an older $SCRIPT_NAME; recreating it"
    cmd_down
  fi
  build_all
  step "Control plane on 127.0.0.1 (state: $STATE)"
  mkdir -p "$STATE" "$LOGS" "$RUN"
  echo "$STATE_FORMAT" >"$STATE/.format"
  generate_pki
  local name
  for name in admin controller-manager scheduler kwok; do write_kubeconfig "$name"; done
  start_etcd
  start_apiserver
  start_controller_manager
  start_scheduler
  start_kwok
  create_fake_nodes
  install_crds
  info "up in $((SECONDS - started))s; export KUBECONFIG=$KUBECONFIG_FILE"
}

cmd_status() {
  local name
  for name in $(components); do
    if is_running "$name"; then
      printf '%-32s running (pid %s)\n' "$name" "$(pid_of "$name")"
    else
      printf '%-32s stopped\n' "$name"
      STATUS_OK=1
    fi
  done
  check "etcd /health" etcd_healthy
  check "apiserver /readyz" apiserver_ready
  check "controller-manager" controller_manager_healthy
  check "scheduler" scheduler_healthy
  check "node $NODE_NAME Ready" node_ready "$NODE_NAME"
  check "node $GPU_NODE_NAME Ready" node_ready "$GPU_NODE_NAME"
  if [ "$STATUS_OK" -eq 0 ]; then
    printf 'server version: %s\n' "$(kube version -o json | jq -r .serverVersion.gitVersion)"
    printf 'KUBECONFIG=%s\n' "$KUBECONFIG_FILE"
  fi
  return "$STATUS_OK"
}

# Stops only the processes recorded in $RUN (ours), newest first, then deletes the state.
cmd_down() {
  local name names
  names=$(components | tr ' ' '\n' | tac)
  for name in $names; do
    stop_daemon "$name" "$BIN/$name"
  done
  rm -rf "$STATE"
  info "state removed ($STATE)"
}

main() {
  case "${1:-}" in
    build) with_lock "$STATE.lock" build_all ;;
    up) with_lock "$STATE.lock" cmd_up ;;
    status) cmd_status ;;
    down) with_lock "$STATE.lock" cmd_down ;;
    env) echo "export KUBECONFIG=$KUBECONFIG_FILE" ;;
    *) die "usage: $SCRIPT_NAME build|up|down|status|env" ;;
  esac
}

main "$@"
