# The test bed's one library, sourced by testbed/cluster.sh (stage 1: the control plane with kwok
# nodes) and testbed/node.sh (stage 2: a real node). It defines functions and the facts both
# stages share; it overrides nothing. Each stage names its own state directory with use_state.
# Callers set ROOT and SCRIPT_NAME before sourcing.

BIN="$ROOT/.bin"
K8S_DIR="$ROOT/testbed/k8s"
export PATH="$BIN:$PATH"

# shellcheck source=testbed/k8s/versions.env
. "$K8S_DIR/versions.env"

# The control plane's fixed facts, read by both stages (node.sh reaches the API server and signs
# the node's certificates with the cluster CA).
CLUSTER_STATE="${RMP_CLUSTER_DIR:-$ROOT/.cache/cluster}"
APISERVER_PORT=61443
KUBECONFIG_FILE="$CLUSTER_STATE/admin.kubeconfig"
PKI="$CLUSTER_STATE/pki"
SERVICE_CIDR=10.96.0.0/16
READY_TIMEOUT=90

# use_state DIR: the stage's state directory; its daemons' pids go to DIR/run/NAME.pid and their
# logs to DIR/logs/NAME.log.
use_state() {
  STATE=$1
  LOGS="$STATE/logs"
  RUN="$STATE/run"
}

step() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() { printf '%s: ERROR: %s\n' "${SCRIPT_NAME:-testbed}" "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Builds: one `go build` per binary, cached in .bin/ by a version stamp (as ci/setup.sh does for
# helm).

# cached_build NAME VERSION FUNCTION: runs FUNCTION NAME unless .bin/NAME at VERSION exists.
cached_build() {
  local name=$1 version=$2 build=$3
  local stamp="$BIN/.$name.version" started=$SECONDS
  if [ -x "$BIN/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then
    info "$name $version present"
    return
  fi
  info "building $name $version (go, nice 19)"
  "$build" "$name"
  echo "$version" >"$stamp"
  info "built $name in $((SECONDS - started))s"
}

# go_build_in DIR OUTPUT PACKAGE LDFLAGS: `go build` of PACKAGE in the wrapper module at DIR.
go_build_in() {
  (cd "$1" && CGO_ENABLED=0 nice -n 19 go build -trimpath -ldflags "$4" -o "$2" "$3")
}

# `go install module/cmd/x@version` into $BIN/NAME, for modules whose go.mod has no replace lines.
go_install_as() {
  local name=$1 package=$2 ldflags=$3 tmp
  tmp=$(mktemp -d)
  CGO_ENABLED=0 GOBIN="$tmp" nice -n 19 go install -trimpath -ldflags "$ldflags" "$package"
  mv "$tmp/$(basename "${package%@*}")" "$BIN/$name"
  rmdir "$tmp"
}

# Release time of the pinned tag, from the module proxy's .info: a reproducible buildDate.
kubernetes_release_date() {
  local info
  info=$(cd "$K8S_DIR/kubernetes" &&
    go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | jq -r .Info)
  jq -r .Time "$info" | sed 's/\.[0-9]*Z$/Z/'
}

# Version stamps read by `kubectl version`, /version and helm's kubeVersion checks.
kubernetes_ldflags() {
  local major minor date flags="-s -w" pkg
  major=$(cut -d. -f1 <<<"${KUBERNETES_VERSION#v}")
  minor=$(cut -d. -f2 <<<"$KUBERNETES_VERSION")
  date=$(kubernetes_release_date)
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major"
    flags+=" -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=archive -X $pkg.buildDate=$date"
  done
  echo "$flags"
}

# ---------------------------------------------------------------------------------------------
# Certificates: the cluster CA (made by cluster.sh) signs every serving and client certificate.

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# issue_cert NAME SUBJECT [SUBJECT_ALT_NAMES] [CA]: writes $PKI/NAME.{key,crt}, signed by
# $PKI/CA.{crt,key} (default: ca). With SANs it is a serving certificate, else a client one.
issue_cert() {
  local name=$1 subject=$2 sans=${3:-} ca=${4:-ca}
  local ext="$PKI/$name.ext"
  new_key "$PKI/$name.key"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$sans" ]; then
      echo "extendedKeyUsage=serverAuth"
      echo "subjectAltName=$sans"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$ext"
  openssl req -new -key "$PKI/$name.key" -subj "$subject" 2>/dev/null |
    openssl x509 -req -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial \
      -days 3650 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$ext"
}

# write_kubeconfig NAME: $CLUSTER_STATE/NAME.kubeconfig with the client cert $PKI/NAME.{crt,key}.
write_kubeconfig() {
  local name=$1
  cat >"$CLUSTER_STATE/$name.kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: rmodelpack-dev
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 <"$PKI/$name.crt")
    client-key-data: $(base64 -w0 <"$PKI/$name.key")
contexts:
- name: rmodelpack-dev
  context: {cluster: rmodelpack-dev, user: $name}
current-context: rmodelpack-dev
KUBECONFIG
  chmod 600 "$CLUSTER_STATE/$name.kubeconfig"
}

kube() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

https_ok() {
  curl -fsS --max-time 3 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$1"
}
apiserver_ready() { https_ok "https://127.0.0.1:$APISERVER_PORT/readyz"; }

node_ready() {
  [ "$(kube get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

# check DESCRIPTION COMMAND...: one line of a `status` report; clears STATUS_OK when it fails.
STATUS_OK=0
check() {
  if "${@:2}" >/dev/null 2>&1; then
    printf '%-32s ok\n' "$1"
  else
    printf '%-32s FAIL\n' "$1"
    STATUS_OK=1
  fi
}

# ---------------------------------------------------------------------------------------------
# Daemons: each runs in its own session with its pid in $RUN/NAME.pid and its log in
# $LOGS/NAME.log, holding no descriptor of whoever started it.

pid_of() { cat "$RUN/$1.pid" 2>/dev/null || true; }

# daemon_running NAME PATH: the recorded pid is alive and still runs PATH (pids get reused).
daemon_running() {
  local pid
  pid=$(pid_of "$1")
  [ -n "$pid" ] && [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$2")" ]
}

# Closes every descriptor above 2 of the current (sub)shell: the lock files' descriptors, the
# pipes of whoever captured our output (pytest), anything else inherited. A daemon that kept the
# lock would hold it for as long as it lives; one that kept a caller's pipe would keep that
# caller waiting for end-of-file.
close_inherited_fds() {
  local fd
  for fd in /proc/"$BASHPID"/fd/*; do
    fd=${fd##*/}
    [ "$fd" -gt 2 ] && eval "exec $fd>&-"
  done
  return 0
}

# start_daemon [--nice] NAME PATH ARGS...: starts PATH in the background, in a session of its own
# (setsid: no controlling terminal, and a caller killing its process group leaves it alone), stdin
# from /dev/null, stdout and stderr appended to its log, no other descriptor. Does nothing when it
# already runs. --nice: nice 19, for what shares the 2 cores with the test suite.
start_daemon() {
  local nice=()
  if [ "$1" = --nice ]; then nice=(nice -n 19); shift; fi
  local name=$1 path=$2
  shift 2
  if daemon_running "$name" "$path"; then
    info "$name already running (pid $(pid_of "$name"))"
    return
  fi
  mkdir -p "$LOGS" "$RUN"
  (
    exec </dev/null >>"$LOGS/$name.log" 2>&1
    close_inherited_fds
    # A background subshell of a non-interactive shell is no process-group leader, so setsid
    # calls setsid(2) and execs in place: the pid recorded below is the daemon's own.
    exec "${nice[@]}" setsid "$path" "$@"
  ) &
  echo $! >"$RUN/$name.pid"
  info "$name started (pid $!, log $LOGS/$name.log)"
}

# stop_daemon NAME PATH: SIGTERM, then SIGKILL after 15 s; only if the pid still runs PATH.
stop_daemon() {
  local name=$1 pid
  daemon_running "$name" "$2" || return 0
  pid=$(pid_of "$name")
  kill "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  info "stopped $name (pid $pid)"
}

# wait_until DESCRIPTION LOG COMMAND...: polls COMMAND for READY_TIMEOUT seconds.
wait_until() {
  local what=$1 log=$2
  shift 2
  local deadline=$((SECONDS + READY_TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 30 "$log" >&2 || true
      die "$what not ready within ${READY_TIMEOUT}s (log: $log)"
    fi
    sleep 0.5
  done
}

# with_lock LOCKFILE COMMAND...: runs COMMAND holding an exclusive flock on LOCKFILE, so parallel
# sessions take turns. start_daemon closes the descriptor in every daemon.
with_lock() {
  local lock=$1 fd
  shift
  mkdir -p "$(dirname "$lock")"
  exec {fd}>"$lock"
  flock -w 900 "$fd" || die "another $SCRIPT_NAME holds $lock for more than 900s"
  "$@"
}
