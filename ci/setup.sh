#!/usr/bin/env bash
# One idempotent setup for a fresh machine, CI and every developer, in named parts:
#
#   bash ci/setup.sh demo      what ci/demo.sh uses: Debian packages (R + plumber, nginx, tini,
#                              docker engine, registry, debootstrap), the Python package in .venv,
#                              dockerd, a local registry on 127.0.0.1:5000, the offline base
#                              image and the trained example models
#   bash ci/setup.sh helm      helm v4 (pinned, built from the Go module proxy) in .bin/
#   bash ci/setup.sh tools     what the test suite adds: the Python test extras, helm3, ct,
#                              kubeconform, the chart README generator (npm), wrk, checkov
#                              (own venv in .cache/checkov), the models trained in their image
#   bash ci/setup.sh cluster   the offline control plane and real-node binaries
#                              (testbed/cluster.sh build, testbed/node.sh build)
#   bash ci/setup.sh [all]     all of the above, for ci/test.sh
#
# Several parts may be named at once (`bash ci/setup.sh demo helm`). Re-running skips every step
# that is already done; two runs at once take turns (a lock in /tmp).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/.bin"
VENV="$ROOT/.venv"
export PATH="$BIN:$PATH"
export GOBIN="$BIN"

HELM_VERSION=v4.3.1
HELM3_VERSION=v3.22.0
CT_VERSION=v3.14.0
KUBECONFORM_VERSION=v0.7.0
README_GENERATOR_VERSION=2.7.2
CHECKOV_VERSION=3.3.30
BASE_IMAGE=debian:trixie-slim
REGISTRY_ADDR=127.0.0.1:5000
STATE_DIR=/var/lib/rmodelpack-dev
LOCK_FILE="${RMP_SETUP_LOCK:-/tmp/rmodelpack-setup.lock}"

PARTS=(demo helm tools cluster)

# Debian packages per part; all of a run's parts are installed with one apt-get.
APT_DEMO=(
  ca-certificates curl openssl
  r-base-core r-cran-plumber r-cran-jsonlite r-cran-randomforest r-cran-mass
  r-cran-ranger r-cran-glmnet
  nginx-light tini
  docker.io containerd runc docker-registry debootstrap
)
APT_HELM=()
APT_TOOLS=(git jq wrk libfaketime)
APT_CLUSTER=(git jq openssl containerd containernetworking-plugins iproute2)

part_seconds=()
current_part=""
python_extras="" # "test" when the run includes the tools part: one pip install, not two

step() {
  printf '\n==> [%s] %s\n' "$current_part" "$*"
}
info() { printf '    %s\n' "$*"; }
die() { printf 'setup.sh: ERROR: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ---------------------------------------------------------------------------------------------
# Parts of the command line

usage_error() {
  printf 'setup.sh: %s\nvalid parts: %s all (default: all)\n' "$1" "${PARTS[*]}" >&2
  exit 2
}

# selected_parts ARG...: the parts to run, in PARTS order, without repeats.
selected_parts() {
  local arg part wanted=" "
  [ "$#" -eq 0 ] && set -- all
  for arg in "$@"; do
    if [ "$arg" = all ]; then
      wanted+="${PARTS[*]} "
    elif [[ " ${PARTS[*]} " == *" $arg "* ]]; then
      wanted+="$arg "
    else
      usage_error "unknown part '$arg'"
    fi
  done
  for part in "${PARTS[@]}"; do
    [[ "$wanted" == *" $part "* ]] && echo "$part"
  done
  return 0
}

# ---------------------------------------------------------------------------------------------
# Steps

install_apt_packages() {
  [ "$#" -gt 0 ] || return 0
  step "Debian packages"
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    info "all $# packages present"
    return
  fi
  info "installing: ${missing[*]}"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# install_python_package [EXTRAS]: editable install of the package (with EXTRAS, e.g. "test").
# The stamp records the extras installed; a newer pyproject.toml means install again.
install_python_package() {
  local extras=${1:-}
  step "Python package in .venv${extras:+ (with $extras extras)}"
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
  fi
  local stamp="$VENV/.rmodelpack-installed"
  if [ -f "$stamp" ] && [ "$stamp" -nt "$ROOT/pyproject.toml" ] &&
    grep -qx "extras=$extras" "$stamp"; then
    info "up to date"
    return
  fi
  if [ -z "$extras" ] && [ -f "$stamp" ] && [ "$stamp" -nt "$ROOT/pyproject.toml" ]; then
    info "up to date (installed with $(sed -n 's/^extras=//p' "$stamp") extras)"
    return
  fi
  info "pip install -e .${extras:+[$extras]}"
  "$VENV/bin/python" -m pip install -q -e "$ROOT${extras:+[$extras]}"
  echo "extras=$extras" >"$stamp"
}

# go_tool NAME VERSION BUILD_COMMAND...: runs the build unless .bin/NAME at VERSION exists.
go_tool() {
  local name=$1 version=$2
  shift 2
  local stamp="$BIN/.$name.version" started=$SECONDS
  if [ -x "$BIN/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then
    info "$name $version present"
    return
  fi
  command -v go >/dev/null || die "Go is needed to build $name; install Go >= 1.24"
  mkdir -p "$BIN"
  info "building $name $version (go)"
  "$@"
  echo "$version" >"$stamp"
  info "built $name in $((SECONDS - started))s"
}

build_helm() {
  go install -ldflags "-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
}

build_helm3() {
  local tmp
  tmp=$(mktemp -d)
  GOBIN="$tmp" go install \
    -ldflags "-X helm.sh/helm/v3/internal/version.version=$HELM3_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM3_VERSION"
  mv "$tmp/helm" "$BIN/helm3"
  rmdir "$tmp"
}

build_ct() {
  # ct's module cannot be `go install`ed here (the proxy refuses its version list, which
  # `go install pkg@version` reads for deprecations), so it builds from a pinned wrapper module.
  (cd "$ROOT/ci/tools/ct" && go build -o "$BIN/ct" \
    -ldflags "-X github.com/helm/chart-testing/v3/ct/cmd.Version=$CT_VERSION" \
    github.com/helm/chart-testing/v3/ct)
}

build_kubeconform() {
  go install -ldflags "-X main.version=$KUBECONFORM_VERSION" \
    "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
}

install_helm() {
  step "helm $HELM_VERSION (pinned, in .bin/)"
  go_tool helm "$HELM_VERSION" build_helm
}

install_test_go_tools() {
  step "helm3, ct, kubeconform (pinned, in .bin/)"
  go_tool helm3 "$HELM3_VERSION" build_helm3
  go_tool ct "$CT_VERSION" build_ct
  go_tool kubeconform "$KUBECONFORM_VERSION" build_kubeconform
}

install_readme_generator() {
  step "@bitnami/readme-generator-for-helm $README_GENERATOR_VERSION (chart README table)"
  local prefix="$ROOT/.cache/npm"
  local installed
  installed=$(node -p "require('$prefix/node_modules/@bitnami/readme-generator-for-helm/package.json').version" 2>/dev/null || true)
  if [ "$installed" = "$README_GENERATOR_VERSION" ]; then
    info "present"
    return
  fi
  if ! command -v npm >/dev/null; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm
  fi
  npm install --no-audit --no-fund --silent --prefix "$prefix" \
    "@bitnami/readme-generator-for-helm@$README_GENERATOR_VERSION"
}

# checkov gets its own venv: its pinned dependencies would clash with the project's .venv.
install_checkov() {
  step "checkov $CHECKOV_VERSION in .cache/checkov (Kubernetes checks of the rendered chart)"
  local venv="$ROOT/.cache/checkov"
  if [ "$("$venv/bin/checkov" --version 2>/dev/null || true)" = "$CHECKOV_VERSION" ]; then
    info "present"
    return
  fi
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q "checkov==$CHECKOV_VERSION"
}

# start_daemon LOG COMMAND...: runs COMMAND as root in a session of its own (a Ctrl-C here leaves
# it running), stdin from /dev/null, stdout and stderr to LOG, and no other descriptor. Nothing
# is left waiting on it: a shell that kept the caller's stdout (a pipe to tee or a CI runner)
# would keep that caller waiting for end-of-file, and the lock's descriptor would keep the lock,
# for the daemon's whole life.
start_daemon() {
  local log=$1 fd run_as=()
  shift
  [ "$(id -u)" -eq 0 ] || run_as=(sudo)
  (
    exec </dev/null >/dev/null 2>&1
    for fd in /proc/"$BASHPID"/fd/*; do
      fd=${fd##*/}
      if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
    done
    # A background subshell is no process-group leader, so setsid execs in place: every exec
    # below keeps this pid, and the daemon is the only process left.
    exec "${run_as[@]}" env DAEMON_LOG="$log" setsid sh -c 'exec "$@" >"$DAEMON_LOG" 2>&1' \
      daemon "$@"
  ) &
}

start_dockerd() {
  step "Docker engine"
  if docker info >/dev/null 2>&1; then
    info "dockerd answering"
    return
  fi
  as_root mkdir -p "$STATE_DIR"
  info "starting dockerd (log: $STATE_DIR/dockerd.log)"
  start_daemon "$STATE_DIR/dockerd.log" dockerd
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && { info "dockerd up"; return; }
    sleep 1
  done
  tail -n 30 "$STATE_DIR/dockerd.log" >&2 || true
  die "dockerd did not answer within 60 s (see $STATE_DIR/dockerd.log)"
}

start_registry() {
  step "Local registry on $REGISTRY_ADDR (stands in for Azure Container Registry)"
  if curl -fsS "http://$REGISTRY_ADDR/v2/" >/dev/null 2>&1; then
    info "registry answering"
    return
  fi
  as_root mkdir -p "$STATE_DIR/registry"
  start_daemon "$STATE_DIR/registry.log" env REGISTRY_HTTP_ADDR="$REGISTRY_ADDR" \
    REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY="$STATE_DIR/registry" \
    REGISTRY_STORAGE_DELETE_ENABLED=true \
    docker-registry serve "$ROOT/ci/registry.yml"
  for _ in $(seq 1 30); do
    curl -fsS "http://$REGISTRY_ADDR/v2/" >/dev/null 2>&1 && { info "registry up"; return; }
    sleep 1
  done
  tail -n 30 "$STATE_DIR/registry.log" >&2 || true
  die "registry did not answer on $REGISTRY_ADDR within 30 s"
}

import_base_image() {
  # The release of $BASE_IMAGE (debian:<release>-slim): trixie, R 4.5 (base-images/debian).
  local release=${BASE_IMAGE#debian:}
  release=${release%-slim}
  step "Offline base image $BASE_IMAGE (debootstrap --variant=minbase $release)"
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    info "$BASE_IMAGE present"
    return
  fi
  local rootfs
  rootfs=$(mktemp -d /var/tmp/rmodelpack-rootfs.XXXXXX)
  info "debootstrap into $rootfs (about a minute)"
  as_root debootstrap --variant=minbase "$release" "$rootfs" http://deb.debian.org/debian \
    >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; die "debootstrap failed"; }
  # Make it look like the official slim image: security updates, no apt caches.
  as_root sh -c "cat >'$rootfs/etc/apt/sources.list' <<EOF
deb http://deb.debian.org/debian $release main
deb http://deb.debian.org/debian $release-updates main
deb http://deb.debian.org/debian-security $release-security main
EOF"
  as_root rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  as_root tar -C "$rootfs" -c . | docker import \
    --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    - "$BASE_IMAGE" >/dev/null
  as_root rm -rf "$rootfs" "$rootfs.log"
  info "imported $BASE_IMAGE"
}

# Trains each example that has `script` and no model.rds newer than it: train.R runs on the
# host; train.sh trains inside the example's image (for packages the host lacks, like caret).
train_examples_with() {
  local script=$1 train dir
  for train in "$ROOT"/examples/*/"$script"; do
    [ -e "$train" ] || continue
    dir=$(dirname "$train")
    if [ -f "$dir/model.rds" ] && [ "$dir/model.rds" -nt "$train" ]; then
      info "$(basename "$dir"): model.rds up to date"
      continue
    fi
    info "$(basename "$dir"): training with $script"
    if [ "$script" = train.R ]; then
      (cd "$dir" && Rscript --vanilla train.R)
    else
      bash "$train"
    fi || die "training $(basename "$dir") failed"
  done
}

train_examples() {
  step "Example models (examples/*/train.R, deterministic)"
  train_examples_with train.R
}

train_image_examples() {
  step "Example models trained in their image (examples/*/train.sh)"
  train_examples_with train.sh
}

build_cluster_binaries() {
  step "Offline Kubernetes control plane binaries (testbed/cluster.sh build: etcd, kube-*, kubectl, kwok)"
  command -v go >/dev/null || die "Go is needed to build the control plane; install Go >= 1.24"
  bash "$ROOT/testbed/cluster.sh" build
  step "Real-node binaries and images (testbed/node.sh build: kubelet, kube-proxy, CoreDNS, ...)"
  bash "$ROOT/testbed/node.sh" build
}

# ---------------------------------------------------------------------------------------------
# Parts

part_demo() {
  install_python_package "$python_extras"
  start_dockerd
  start_registry
  import_base_image
  train_examples
}

part_helm() {
  install_helm
}

part_tools() {
  install_python_package "$python_extras"
  install_test_go_tools
  install_readme_generator
  install_checkov
  start_dockerd
  train_image_examples
}

part_cluster() {
  start_dockerd # testbed/node.sh build makes the pause image with docker
  build_cluster_binaries
}

apt_packages_of() {
  local part
  for part in "$@"; do
    case $part in
      demo) printf '%s\n' "${APT_DEMO[@]}" ;;
      helm) [ "${#APT_HELM[@]}" -eq 0 ] || printf '%s\n' "${APT_HELM[@]}" ;;
      tools) printf '%s\n' "${APT_TOOLS[@]}" ;;
      cluster) printf '%s\n' "${APT_CLUSTER[@]}" ;;
    esac
  done | awk '!seen[$0]++'
}

# ---------------------------------------------------------------------------------------------
# Summary

version_of() {
  "$@" 2>/dev/null || echo "-"
}

summary() {
  local parts=" $* " found=()
  if [[ "$parts" == *" demo "* ]]; then
    found+=("R $(version_of Rscript -e 'cat(as.character(getRversion()))')"
      "plumber $(version_of Rscript -e 'cat(as.character(packageVersion("plumber")))')"
      "docker $(version_of docker version --format '{{.Server.Version}}')"
      "registry $REGISTRY_ADDR" "base $BASE_IMAGE")
  fi
  if [[ "$parts" == *" helm "* ]]; then
    found+=("helm $(version_of "$BIN/helm" version --template '{{.Version}}')")
  fi
  if [[ "$parts" == *" tools "* ]]; then
    found+=("helm3 $(version_of "$BIN/helm3" version --template '{{.Version}}')"
      "ct $(version_of "$BIN/ct" version | awk '/Version/ {print $2}')"
      "kubeconform $(version_of "$BIN/kubeconform" -v)")
  fi
  if [[ "$parts" == *" cluster "* ]]; then
    found+=("kube-apiserver $(version_of "$BIN/kube-apiserver" --version | awk '{print $2}')"
      "kubelet $(version_of "$BIN/kubelet" --version | awk '{print $2}')")
  fi
  printf '\nsetup ok: %s\n' "$(IFS=';'; echo "${found[*]}" | sed 's/;/, /g')"
}

take_lock() {
  exec {lock_fd}>"$LOCK_FILE"
  if ! flock -n "$lock_fd"; then
    info "another ci/setup.sh is running; waiting for $LOCK_FILE"
    flock -w 3600 "$lock_fd" || die "another ci/setup.sh held $LOCK_FILE for an hour"
  fi
}

main() {
  local started=$SECONDS part part_started parts
  mapfile -t parts < <(selected_parts "$@")
  [ "${#parts[@]}" -gt 0 ] || exit 2 # selected_parts printed the usage error
  take_lock
  printf 'ci/setup.sh: %s\n' "${parts[*]}"
  [[ " ${parts[*]} " == *" tools "* ]] && python_extras=test

  current_part=${parts[*]}
  local apt_packages
  mapfile -t apt_packages < <(apt_packages_of "${parts[@]}")
  part_started=$SECONDS
  install_apt_packages "${apt_packages[@]}"
  part_seconds+=("apt $((SECONDS - part_started))s")

  for part in "${parts[@]}"; do
    current_part=$part
    part_started=$SECONDS
    "part_$part"
    part_seconds+=("$part $((SECONDS - part_started))s")
  done
  summary "${parts[@]}"
  printf 'setup took %ss (%s)\n' "$((SECONDS - started))" "$(IFS=,; echo "${part_seconds[*]}" | sed 's/,/, /g')"
}

# Sourced (by tests/test_setup_daemons.py), it only defines its functions.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
