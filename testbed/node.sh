#!/usr/bin/env bash
# Stage 2 of the test bed: a real node for the offline control plane (testbed/cluster.sh). A
# kubelet from the same Kubernetes build, on its own containerd 1.6 instance (Debian's binary, a
# private config, socket and state, so the system containerd that backs docker is never touched),
# with the CNI bridge + portmap plugins, kube-proxy (iptables mode) for Service IPs and CoreDNS for
# cluster DNS. Pods scheduled there really run; reach them with
# `kubectl port-forward --address 127.0.0.1` or through Traefik (`ingress`).
#
#   testbed/node.sh build        cluster.sh build, then (or reuse) .bin/kubelet, kube-proxy,
#                                metrics-server, coredns, traefik, cert-manager-ca (the CA-only
#                                controller of testbed/cert-manager) and the pause and Traefik images
#   testbed/node.sh up           cluster.sh up, then containerd + kubelet (waits for the node
#                                Ready), kube-proxy, CoreDNS, metrics-server and cert-manager-ca
#   testbed/node.sh load IMAGE.. copy docker images into the node's containerd (k8s.io namespace)
#   testbed/node.sh ingress      (after up) Traefik, built from its Go module, as a host-network pod
#                                on the node: websecure on 127.0.0.1:63443, web on 127.0.0.1:63080
#   testbed/node.sh status       health of every piece; exit 1 when not healthy
#   testbed/node.sh down         delete the node's pods, stop the daemons, remove kube-proxy's and
#                                our iptables rules, the bridge, route, mounts, cgroups and state
#
# The node is tainted rmodelpack.io/real-node=true:NoSchedule: only pods that tolerate it run
# here, so the kwok-based tests never land on it. State: $RMP_NODE_DIR (.cache/node).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT_NAME=testbed/node.sh
# shellcheck source=testbed/lib.sh
. "$ROOT/testbed/lib.sh"
use_state "${RMP_NODE_DIR:-$ROOT/.cache/node}"
NODE_K8S="$K8S_DIR/node"
# shellcheck source=testbed/k8s/node/versions.env
. "$NODE_K8S/versions.env"
TRAEFIK_IMAGE="rmodelpack.local/traefik:$TRAEFIK_VERSION"
TRAEFIK_WEB_PORT=63080
TRAEFIK_WEBSECURE_PORT=63443
TRAEFIK_PING_PORT=63900
REAL_NODE=rmp-node-0
REAL_NODE_TAINT=rmodelpack.io/real-node
KUBELET_PORT=61250
KUBELET_HEALTHZ_PORT=61248
METRICS_SERVER_PORT=61263
KUBE_PROXY_HEALTHZ_PORT=61256
KUBE_PROXY_METRICS_PORT=61249
COREDNS_HEALTH_PORT=61281
COREDNS_READY_PORT=61282
CNI_BRIDGE=rmp-cni0
POD_SUBNET=10.88.0.0/16
# The bridge's own address: the pods' gateway, and where CoreDNS answers them.
BRIDGE_IP=10.88.0.1
CLUSTER_DOMAIN=cluster.local
# Our one filter rule: bridged pod-to-pod traffic (a Service IP translated to a pod on the same
# bridge) passes docker's FORWARD policy DROP, on this bridge only.
FORWARD_RULE=(-i "$CNI_BRIDGE" -o "$CNI_BRIDGE" -m comment --comment "rmodelpack test node: pod to pod on $CNI_BRIDGE" -j ACCEPT)
CNI_BIN_DIR=/usr/lib/cni
CONTAINERD_DIR="$STATE/containerd"
CONTAINERD_SOCKET="$CONTAINERD_DIR/containerd.sock"
KUBELET_DIR="$STATE/kubelet"
NETNS_DIR="$CONTAINERD_DIR/state/io.containerd.grpc.v1.cri/netns"

node_ctr() { ctr --address "$CONTAINERD_SOCKET" --namespace k8s.io "$@"; }

# ---------------------------------------------------------------------------------------------
# Build

# The kubelet and kube-proxy share a wrapper module (same k8s.io pins as testbed/k8s/kubernetes)
# because they need modules the control-plane wrapper does not list; same version ldflags.
build_node_command() {
  go_build_in "$NODE_K8S/kubelet" "$BIN/$1" "k8s.io/kubernetes/cmd/$1" "$(kubernetes_ldflags)"
}

pause_image_present() { docker image inspect "$PAUSE_IMAGE" >/dev/null 2>&1; }

build_pause_image() {
  local context
  context=$(mktemp -d)
  go_build_in "$NODE_K8S/pause" "$context/pause" . "-s -w"
  cp "$NODE_K8S/pause/Dockerfile" "$context/"
  docker build -q -t "$PAUSE_IMAGE" "$context" >/dev/null
  rm -rf "$context"
  info "built $PAUSE_IMAGE (FROM scratch, $(docker image inspect -f '{{.Size}}' "$PAUSE_IMAGE") bytes)"
}

# metrics-server's go.mod has no replace lines, so `go install module@version` builds it.
build_metrics_server() {
  go_install_as "$1" "sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER_VERSION" \
    "-s -w -X sigs.k8s.io/metrics-server/pkg/version.gitVersion=$METRICS_SERVER_VERSION"
}

# CoreDNS's go.mod has no replace lines either.
build_coredns() {
  go_install_as "$1" "github.com/coredns/coredns@$COREDNS_VERSION" \
    "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION"
}

# testbed/cert-manager: a CA-only cert-manager controller from the main module's public packages.
# The stamp hashes its sources, so an edit rebuilds it and an unchanged tree skips the build.
CERT_MANAGER_DIR="$ROOT/testbed/cert-manager"
cert_manager_stamp() {
  cat "$CERT_MANAGER_DIR"/{main.go,go.mod,go.sum} | sha256sum | cut -c1-16
}
build_cert_manager() { bash "$CERT_MANAGER_DIR/build.sh" "$BIN/$1"; }

# Everything `up` and `ingress` need, so that after `build` they only start things.
build_node() {
  bash "$ROOT/testbed/cluster.sh" build
  step "Node binaries and images (kubelet, kube-proxy, metrics-server, CoreDNS, cert-manager-ca, Traefik, pause)"
  command -v containerd >/dev/null || die "containerd is needed (apt-get install containerd)"
  command -v docker >/dev/null || die "docker is needed to build the pause and Traefik images"
  command -v iptables >/dev/null || die "iptables is needed for Service IPs (apt-get install iptables)"
  [ -x "$CNI_BIN_DIR/bridge" ] && [ -x "$CNI_BIN_DIR/portmap" ] ||
    die "CNI plugins are needed (apt-get install containernetworking-plugins)"
  cached_build kubelet "$KUBERNETES_VERSION" build_node_command
  cached_build kube-proxy "$KUBERNETES_VERSION" build_node_command
  cached_build metrics-server "$METRICS_SERVER_VERSION" build_metrics_server
  cached_build coredns "$COREDNS_VERSION" build_coredns
  cached_build cert-manager-ca "$(cert_manager_stamp)" build_cert_manager
  if pause_image_present; then info "$PAUSE_IMAGE present"; else build_pause_image; fi
  if traefik_image_present; then info "$TRAEFIK_IMAGE present"; else build_traefik_image; fi
}

# ---------------------------------------------------------------------------------------------
# Configuration

write_node_pki() {
  [ -f "$PKI/.node-complete" ] && return
  # Node authorizer identity: system:node:NAME in group system:nodes.
  issue_cert kubelet "/O=system:nodes/CN=system:node:$REAL_NODE"
  issue_cert kubelet-serving "/CN=$REAL_NODE" "IP:127.0.0.1,DNS:$REAL_NODE,DNS:localhost"
  # The user testbed/k8s/node/metrics-server.yaml grants upstream's metrics-server RBAC to.
  issue_cert metrics-server "/CN=system:metrics-server"
  # The user the API server's bootstrap RBAC binds to system:node-proxier.
  issue_cert kube-proxy "/CN=system:kube-proxy"
  # The user testbed/k8s/node/coredns.yaml binds to upstream's system:coredns.
  issue_cert coredns "/CN=system:coredns"
  touch "$PKI/.node-complete"
}

write_containerd_config() {
  mkdir -p "$CONTAINERD_DIR" "$STATE/cni/net.d"
  cat >"$CONTAINERD_DIR/config.toml" <<TOML
version = 2
root = "$CONTAINERD_DIR/root"
state = "$CONTAINERD_DIR/state"
# Only what the kubelet needs; nothing of the system instance (/run/containerd) is shared.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "$CONTAINERD_SOCKET"

[ttrpc]
  address = "$CONTAINERD_DIR/containerd-ttrpc.sock"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # This machine's root lacks CAP_SYS_RESOURCE, so runc cannot lower oom_score_adj to the
  # sandbox's -998 ("can't get final child's PID from pipe: EOF"); clamp it to ours (0).
  restrict_oom_score_adj = true
  # Pod network namespaces under our state dir, so down can find and unmount exactly ours.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$STATE/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$CONTAINERD_DIR/runc"
TOML
}

# bridge + host-local IPAM + portmap. No ipMasq and no default route: pods need no way out, only
# a route to the Service range through the bridge (kube-proxy's rules). The "unreachable" route is
# a safety net: host-originated packets to a pod IP (kubelet probes, the host-network Traefik)
# use the bridge's own route while it exists and are refused on the spot otherwise, never sent
# to the default gateway. The bridge is made here, before any pod, so CoreDNS can listen on its
# address; the CNI plugin adopts it.
write_cni_config() {
  ip route replace unreachable "$POD_SUBNET" metric 4000
  pod_subnet_is_fenced || die "the unreachable route for $POD_SUBNET is missing; no pod may start"
  create_bridge
  accept_bridge_forwarding
  cat >"$STATE/cni/net.d/10-rmodelpack.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "rmodelpack",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$CNI_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni/ipam",
        "ranges": [[{"subnet": "$POD_SUBNET", "gateway": "$BRIDGE_IP"}]],
        "routes": [{"dst": "$SERVICE_CIDR"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
}

create_bridge() {
  ip link show "$CNI_BRIDGE" >/dev/null 2>&1 || ip link add "$CNI_BRIDGE" type bridge
  ip addr replace "$BRIDGE_IP/${POD_SUBNET#*/}" dev "$CNI_BRIDGE"
  ip link set "$CNI_BRIDGE" up
}

# br_netfilter is on here (bridged frames cross iptables) and docker's FORWARD policy is DROP:
# without this rule a pod cannot reach another pod on the same bridge, and so no Service. It
# matches only frames that enter and leave our bridge; nothing reaches any other interface.
accept_bridge_forwarding() {
  bridge_forwarding_accepted || iptables -I FORWARD 1 "${FORWARD_RULE[@]}"
}
bridge_forwarding_accepted() { iptables -C FORWARD "${FORWARD_RULE[@]}" 2>/dev/null; }

write_kubelet_config() {
  mkdir -p "$KUBELET_DIR"
  cat >"$STATE/kubelet-config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
# The API server (cluster.sh) presents no kubelet client certificate, so its port-forward and
# logs requests arrive anonymous; the kubelet listens on 127.0.0.1 only.
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$CONTAINERD_SOCKET
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
registerWithTaints:
- {key: $REAL_NODE_TAINT, value: "true", effect: NoSchedule}
# A shared CI disk: never evict or garbage-collect images because of other tenants' usage.
evictionHard: {memory.available: 100Mi, nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# Pods get CoreDNS (on the bridge's address) for cluster names, as on AKS.
clusterDNS: [$BRIDGE_IP]
clusterDomain: $CLUSTER_DOMAIN
resolvConf: /etc/resolv.conf
serializeImagePulls: false
maxPods: 20
# kube-proxy owns the Service rules; the kubelet's own KUBE-FIREWALL chains would outlive it.
makeIPTablesUtilChains: false
YAML
}

# ---------------------------------------------------------------------------------------------
# Processes

# The pod range's safety net (see write_cni_config), checked before containerd or any pod starts.
pod_subnet_is_fenced() {
  ip route show table main type unreachable | grep -q "^unreachable $POD_SUBNET .*metric 4000"
}

containerd_ready() { [ -S "$CONTAINERD_SOCKET" ] && node_ctr --connect-timeout 5s version; }
kubelet_healthy() { curl -fsS --max-time 3 "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz"; }

start_containerd() {
  write_containerd_config
  write_cni_config
  start_daemon --nice containerd "$(command -v containerd)" --config "$CONTAINERD_DIR/config.toml"
  wait_until containerd "$LOGS/containerd.log" containerd_ready
}

# load_images IMAGE...: docker save | ctr import into the node's k8s.io namespace.
load_images() {
  local image
  for image in "$@"; do
    docker save "$image" | node_ctr images import --digests --snapshotter overlayfs - >/dev/null
    info "loaded $image"
  done
}

start_kubelet() {
  write_node_pki
  write_kubeconfig kubelet
  write_kubelet_config
  # kubelet is a nice-19 process like every build: it shares 2 cores with the test suite.
  start_daemon --nice kubelet "$BIN/kubelet" --config="$STATE/kubelet-config.yaml" \
    --kubeconfig="$CLUSTER_STATE/kubelet.kubeconfig" --root-dir="$KUBELET_DIR" \
    --hostname-override="$REAL_NODE" --cloud-provider=external \
    --node-labels="$REAL_NODE_TAINT=true" --v=1
  wait_until kubelet "$LOGS/kubelet.log" kubelet_healthy
  wait_until "node $REAL_NODE registered" "$LOGS/kubelet.log" kube get node "$REAL_NODE"
  initialize_node_address
  wait_until "node $REAL_NODE Ready" "$LOGS/kubelet.log" node_ready "$REAL_NODE"
}

# The kubelet refuses a loopback --node-ip ("nodeIP can't be loopback address"), yet the API
# server must reach its port-forward endpoint on 127.0.0.1. So the kubelet runs with
# --cloud-provider=external (it then leaves the addresses alone) and this script plays the cloud
# controller: InternalIP 127.0.0.1 only (a Hostname address would be tried first and not resolve),
# then it lifts the "uninitialized" taint that external mode registers the node with.
initialize_node_address() {
  kube patch node "$REAL_NODE" --subresource=status --type=merge \
    -p '{"status":{"addresses":[{"type":"InternalIP","address":"127.0.0.1"}]}}' >/dev/null
  kube taint node "$REAL_NODE" node.cloudprovider.kubernetes.io/uninitialized- >/dev/null 2>&1 || true
}

# metrics-server scrapes the kubelet's /metrics/resource on 127.0.0.1 (the node's only address,
# its port from the node status); --kubelet-insecure-tls: the kubelet's serving certificate is
# ours but metrics-server is not given its CA. Only the real node: kwok nodes have no kubelet.
# --metric-resolution=10s (the minimum) lets the HPA see load within seconds.
start_metrics_server() {
  write_kubeconfig metrics-server
  local kubeconfig="$CLUSTER_STATE/metrics-server.kubeconfig"
  mkdir -p "$STATE/metrics-server"
  start_daemon --nice metrics-server "$BIN/metrics-server" --bind-address=127.0.0.1 \
    --secure-port="$METRICS_SERVER_PORT" --cert-dir="$STATE/metrics-server" \
    --kubeconfig="$kubeconfig" --authentication-kubeconfig="$kubeconfig" \
    --authorization-kubeconfig="$kubeconfig" \
    --kubelet-insecure-tls --kubelet-preferred-address-types=InternalIP \
    --kubelet-use-node-status-port --node-selector="$REAL_NODE_TAINT=true" \
    --metric-resolution=10s --kubelet-request-timeout=5s
  sed "s|@PORT@|$METRICS_SERVER_PORT|g" "$NODE_K8S/metrics-server.yaml" | kube apply -f - >/dev/null
  wait_until "metrics.k8s.io API" "$LOGS/metrics-server.log" metrics_api_available
  wait_until "metrics of node $REAL_NODE" "$LOGS/metrics-server.log" kube get --raw \
    "/apis/metrics.k8s.io/v1beta1/nodes/$REAL_NODE"
}

# cert-manager-ca issues the chart's Certificates from CA Issuers in every namespace (a host
# process with a kubeconfig; no webhook, no leader election, no ClusterIssuers). Its client
# certificate is in system:masters: upstream's RBAC ships with cert-manager's Helm chart, which
# is not here. It has no health endpoint; its log shows each control loop starting.
start_cert_manager() {
  [ -f "$PKI/cert-manager.crt" ] || issue_cert cert-manager "/O=system:masters/CN=rmp:cert-manager"
  write_kubeconfig cert-manager
  start_daemon --nice cert-manager "$BIN/cert-manager-ca" \
    --kubeconfig="$CLUSTER_STATE/cert-manager.kubeconfig"
  wait_until "cert-manager-ca control loops" "$LOGS/cert-manager.log" grep -q \
    'controller="certificates-issuing"' "$LOGS/cert-manager.log"
}
cert_manager_running() { daemon_running cert-manager "$BIN/cert-manager-ca"; }

# kube-proxy in iptables mode: Service IPs (10.96.0.0/16) become DNAT rules to the endpoints.
# Host-wide rules, kept small: NodePorts only on the bridge's own address (never on the host's
# interfaces, never on localhost, which would need route_localnet); conntrack sysctls left as
# they are; pods recognised by their bridge. `down` runs `kube-proxy --cleanup`, which removes
# every rule it wrote.
start_kube_proxy() {
  write_kubeconfig kube-proxy
  start_daemon --nice kube-proxy "$BIN/kube-proxy" \
    --kubeconfig="$CLUSTER_STATE/kube-proxy.kubeconfig" --hostname-override="$REAL_NODE" \
    --proxy-mode=iptables --cluster-cidr="$POD_SUBNET" \
    --detect-local-mode=BridgeInterface --pod-bridge-interface="$CNI_BRIDGE" \
    --bind-address=127.0.0.1 --healthz-bind-address="127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT" \
    --metrics-bind-address="127.0.0.1:$KUBE_PROXY_METRICS_PORT" \
    --nodeport-addresses="$BRIDGE_IP/32" --iptables-localhost-nodeports=false \
    --conntrack-max-per-core=0 --conntrack-tcp-timeout-established=0 \
    --conntrack-tcp-timeout-close-wait=0 --v=1
  wait_until kube-proxy "$LOGS/kube-proxy.log" kube_proxy_healthy
}

kube_proxy_healthy() { curl -fsS --max-time 3 "http://127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT/healthz"; }

# CoreDNS answers cluster names only (no `forward`: the pods need no names from outside), on the
# bridge's address, port 53, UDP and TCP.
start_coredns() {
  write_kubeconfig coredns
  kube apply -f "$NODE_K8S/coredns.yaml" >/dev/null
  cat >"$STATE/Corefile" <<COREFILE
.:53 {
    bind $BRIDGE_IP
    errors
    health 127.0.0.1:$COREDNS_HEALTH_PORT
    ready 127.0.0.1:$COREDNS_READY_PORT
    kubernetes $CLUSTER_DOMAIN in-addr.arpa ip6.arpa {
        kubeconfig $CLUSTER_STATE/coredns.kubeconfig
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
COREFILE
  start_daemon --nice coredns "$BIN/coredns" -conf "$STATE/Corefile"
  wait_until CoreDNS "$LOGS/coredns.log" coredns_ready
}

coredns_ready() { curl -fsS --max-time 3 "http://127.0.0.1:$COREDNS_READY_PORT/ready"; }

metrics_api_available() {
  [ "$(kube get apiservice v1beta1.metrics.k8s.io \
    -o jsonpath='{.status.conditions[?(@.type=="Available")].status}')" = True ]
}

node_has_loopback_address() {
  [ "$(kube get node "$REAL_NODE" -o jsonpath='{.status.addresses[*].address}')" = 127.0.0.1 ]
}

node_healthy() {
  pod_subnet_is_fenced && bridge_forwarding_accepted && containerd_ready && kubelet_healthy &&
    node_ready "$REAL_NODE" && node_has_loopback_address && kube_proxy_healthy && coredns_ready &&
    metrics_api_available && cert_manager_running
} >/dev/null 2>&1

cmd_node_up() {
  local started=$SECONDS
  bash "$ROOT/testbed/cluster.sh" up
  if node_healthy; then
    info "node $REAL_NODE healthy; nothing to do"
    return
  fi
  build_node
  step "Real node $REAL_NODE (state: $STATE)"
  mkdir -p "$STATE" "$LOGS" "$RUN"
  start_containerd
  load_images "$PAUSE_IMAGE"
  start_kubelet
  start_kube_proxy
  start_coredns
  start_metrics_server
  start_cert_manager
  info "node up in $((SECONDS - started))s"
}

cmd_node_status() {
  check "unreachable route $POD_SUBNET" pod_subnet_is_fenced
  check "FORWARD $CNI_BRIDGE -> $CNI_BRIDGE" bridge_forwarding_accepted
  check "containerd" containerd_ready
  check "kubelet /healthz" kubelet_healthy
  check "node $REAL_NODE Ready" node_ready "$REAL_NODE"
  check "node address 127.0.0.1" node_has_loopback_address
  check "kube-proxy /healthz" kube_proxy_healthy
  check "CoreDNS /ready" coredns_ready
  check "metrics.k8s.io API" metrics_api_available
  check "cert-manager-ca" cert_manager_running
  return "$STATUS_OK"
}

# ---------------------------------------------------------------------------------------------
# Ingress: Traefik as a pod on the real node (its routes reach the app pods over the pod network).

build_traefik() {
  go_build_in "$NODE_K8S/traefik" "$BIN/$1" github.com/traefik/traefik/v3/cmd/traefik "-s -w"
}

traefik_image_present() {
  docker image inspect "$TRAEFIK_IMAGE" >/dev/null 2>&1 &&
    [ "$(cat "$BIN/.traefik.version" 2>/dev/null)" = "$TRAEFIK_VERSION" ]
}

build_traefik_image() {
  cached_build traefik "$TRAEFIK_VERSION" build_traefik
  local context
  context=$(mktemp -d)
  cp "$BIN/traefik" "$NODE_K8S/traefik/Dockerfile" "$context/"
  docker build -q -t "$TRAEFIK_IMAGE" "$context" >/dev/null
  rm -rf "$context"
  info "built $TRAEFIK_IMAGE"
}

traefik_ready() { curl -fsS --max-time 3 "http://127.0.0.1:$TRAEFIK_PING_PORT/ping"; }

cmd_ingress() {
  node_healthy || die "the node is not up (bash testbed/node.sh up)"
  step "Traefik $TRAEFIK_VERSION on $REAL_NODE"
  traefik_image_present || build_traefik_image
  load_images "$TRAEFIK_IMAGE"
  sed -e "s|@IMAGE@|$TRAEFIK_IMAGE|" -e "s|@APISERVER_PORT@|$APISERVER_PORT|" \
    -e "s|@WEB_PORT@|$TRAEFIK_WEB_PORT|" -e "s|@WEBSECURE_PORT@|$TRAEFIK_WEBSECURE_PORT|" \
    -e "s|@PING_PORT@|$TRAEFIK_PING_PORT|" "$NODE_K8S/traefik/traefik.yaml" | kube apply -f - >/dev/null
  kube rollout status -n rmp-ingress deployment/traefik --timeout="${READY_TIMEOUT}s" >/dev/null ||
    { kube logs -n rmp-ingress deployment/traefik -c traefik --tail=30 >&2 || true; die "Traefik not ready"; }
  wait_until "Traefik /ping" "$LOGS/kubelet.log" traefik_ready
  info "Traefik ready: web 127.0.0.1:$TRAEFIK_WEB_PORT, websecure 127.0.0.1:$TRAEFIK_WEBSECURE_PORT"
}

# ---------------------------------------------------------------------------------------------
# Teardown: pods first (the kubelet runs CNI DEL), then processes, then what they leave behind.

delete_node_pods() {
  apiserver_ready >/dev/null 2>&1 || return 0
  # An APIService without its server would fail every client's API discovery (helm, kubectl).
  sed "s|@PORT@|$METRICS_SERVER_PORT|g" "$NODE_K8S/metrics-server.yaml" |
    kube delete --ignore-not-found -f - >/dev/null 2>&1 || true
  kube delete namespace rmp-ingress --ignore-not-found --timeout=60s >/dev/null 2>&1 || true
  kube delete clusterrolebinding/rmp-traefik clusterrole/rmp-traefik ingressclass/traefik --ignore-not-found >/dev/null 2>&1 || true
  kube delete -f "$NODE_K8S/coredns.yaml" --ignore-not-found >/dev/null 2>&1 || true
  kube delete pods --all-namespaces --field-selector "spec.nodeName=$REAL_NODE" \
    --grace-period=5 --timeout=60s --ignore-not-found >/dev/null 2>&1 || true
  kube delete node "$REAL_NODE" --ignore-not-found --timeout=30s >/dev/null 2>&1 || true
}

# Whatever the kubelet did not stop (a crash, a timeout): kill and delete every task/container.
remove_leftover_containers() {
  containerd_ready >/dev/null 2>&1 || return 0
  local id
  for id in $(node_ctr tasks ls -q 2>/dev/null); do
    node_ctr tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
  done
  sleep 1
  for id in $(node_ctr tasks ls -q 2>/dev/null); do node_ctr tasks delete -f "$id" >/dev/null 2>&1 || true; done
  for id in $(node_ctr containers ls -q 2>/dev/null); do node_ctr containers delete "$id" >/dev/null 2>&1 || true; done
}

mounts_under() {
  awk -v d="$1" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts | sort -ru
}

# unmount_under DIR: DIR and every mount below it, deepest first (the kubelet bind-mounts its
# root dir onto itself, and a restarted kubelet stacks another one).
unmount_under() {
  local mountpoint
  for _ in 1 2 3 4 5; do
    [ -n "$(mounts_under "$1")" ] || return 0
    for mountpoint in $(mounts_under "$1"); do umount -l "$mountpoint" 2>/dev/null || true; done
  done
}

# The kubelet's cgroupfs driver leaves kubepods/ in every v1 hierarchy; remove the empty tree.
remove_kubepods_cgroups() {
  local dir
  for dir in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$dir" ] || continue
    find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

# containerd 1.6 puts shim sockets under /run/containerd/s whatever its config says (docker's
# own containerd lives in /var/run/docker); the shims remove their sockets, we remove the dirs
# if empty, so a host without a system containerd is left as it was.
remove_empty_shim_dirs() {
  rmdir /run/containerd/s /run/containerd/runc/k8s.io /run/containerd/runc /run/containerd/fifo \
    /run/containerd 2>/dev/null || true
}

# Every rule kube-proxy wrote (its own --cleanup), then ours, then the chains the kubelet makes
# in both families (KUBE-FIREWALL only before makeIPTablesUtilChains: false).
remove_iptables_rules() {
  if [ -x "$BIN/kube-proxy" ]; then
    mkdir -p "$LOGS"
    "$BIN/kube-proxy" --cleanup >>"$LOGS/kube-proxy.log" 2>&1 || true
  fi
  while bridge_forwarding_accepted; do iptables -D FORWARD "${FORWARD_RULE[@]}"; done
  local tool table chain rule
  for tool in iptables ip6tables; do
    for table in filter nat mangle; do
      for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
        "$tool" -t "$table" -S 2>/dev/null | grep -- "-j $chain\$" | sed 's/^-A /-D /' |
          while read -r rule; do
            # shellcheck disable=SC2086 # a rule as iptables -S prints it, word-split on purpose
            "$tool" -t "$table" $rule || true
          done || true
        "$tool" -t "$table" -F "$chain" 2>/dev/null || true
        "$tool" -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  done
}

cmd_node_down() {
  delete_node_pods
  stop_daemon cert-manager "$BIN/cert-manager-ca"
  stop_daemon metrics-server "$BIN/metrics-server"
  stop_daemon coredns "$BIN/coredns"
  stop_daemon kube-proxy "$BIN/kube-proxy"
  stop_daemon kubelet "$BIN/kubelet"
  remove_leftover_containers
  stop_daemon containerd "$(command -v containerd)"
  unmount_under "$KUBELET_DIR"
  unmount_under "$NETNS_DIR"
  unmount_under "$CONTAINERD_DIR"
  remove_iptables_rules
  ip link delete "$CNI_BRIDGE" 2>/dev/null || true
  ip route delete unreachable "$POD_SUBNET" metric 4000 2>/dev/null || true
  remove_kubepods_cgroups
  remove_empty_shim_dirs
  rm -rf "$STATE"
  info "node state removed ($STATE)"
}

node_main() {
  case "${1:-}" in
    build) with_lock "$STATE.lock" build_node ;;
    up) with_lock "$STATE.lock" cmd_node_up ;;
    load) shift && load_images "$@" ;;
    ingress) with_lock "$STATE.lock" cmd_ingress ;;
    status) cmd_node_status ;;
    down) with_lock "$STATE.lock" cmd_node_down ;;
    env) echo "export KUBECONFIG=$KUBECONFIG_FILE" ;;
    *) die "usage: $SCRIPT_NAME build|up|load IMAGE...|ingress|status|down|env" ;;
  esac
}

node_main "$@"
