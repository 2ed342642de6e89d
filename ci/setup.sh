#!/usr/bin/env bash
# One idempotent setup for a fresh machine, CI and every developer.
# Installs (and starts, where needed) everything rmodelpack's tests and examples use:
#   Debian packages (R + plumber, docker engine, registry, nginx, tini, wrk, debootstrap),
#   the Python package in .venv with test extras,
#   pinned helm (v4) + helm3, ct and kubeconform in .bin/, the chart README generator (npm),
#   dockerd, a local registry on 127.0.0.1:5000, an offline debian:bookworm-slim image,
#   the example models, and the offline control plane's binaries (ci/cluster.sh build).
# Re-running it skips every step that is already done.
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
BASE_IMAGE=debian:bookworm-slim
REGISTRY_ADDR=127.0.0.1:5000
STATE_DIR=/var/lib/rmodelpack-dev

APT_PACKAGES=(
  ca-certificates curl openssl git jq
  r-base-core r-cran-plumber r-cran-jsonlite r-cran-randomforest r-cran-mass
  r-cran-ranger r-cran-glmnet
  nginx-light tini wrk
  docker.io containerd runc docker-registry debootstrap
  containernetworking-plugins iproute2
)

step() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() { printf 'setup.sh: ERROR: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_apt_packages() {
  step "Debian packages"
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    info "all ${#APT_PACKAGES[@]} packages present"
    return
  fi
  info "installing: ${missing[*]}"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

install_python_package() {
  step "Python package in .venv (with test extras)"
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
  fi
  local stamp="$VENV/.rmodelpack-installed"
  if [ -f "$stamp" ] && [ "$stamp" -nt "$ROOT/pyproject.toml" ]; then
    info "up to date"
    return
  fi
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e "$ROOT[test]"
  touch "$stamp"
}

# go_tool NAME VERSION BUILD_COMMAND...: runs the build unless .bin/NAME at VERSION exists.
go_tool() {
  local name=$1 version=$2
  shift 2
  local stamp="$BIN/.$name.version"
  if [ -x "$BIN/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then
    info "$name $version present"
    return
  fi
  info "building $name $version (go)"
  "$@"
  echo "$version" >"$stamp"
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

install_go_tools() {
  step "helm, helm3, ct, kubeconform (pinned, in .bin/)"
  command -v go >/dev/null || die "Go is needed to build helm/ct/kubeconform; install Go >= 1.24"
  mkdir -p "$BIN"
  go_tool helm "$HELM_VERSION" go install \
    -ldflags "-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
  go_tool helm3 "$HELM3_VERSION" build_helm3
  go_tool ct "$CT_VERSION" build_ct
  go_tool kubeconform "$KUBECONFORM_VERSION" go install \
    -ldflags "-X main.version=$KUBECONFORM_VERSION" \
    "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
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

start_dockerd() {
  step "Docker engine"
  if docker info >/dev/null 2>&1; then
    info "dockerd answering"
    return
  fi
  as_root mkdir -p "$STATE_DIR"
  info "starting dockerd (log: $STATE_DIR/dockerd.log)"
  as_root sh -c "nohup dockerd >'$STATE_DIR/dockerd.log' 2>&1 &"
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
  as_root sh -c "REGISTRY_HTTP_ADDR=$REGISTRY_ADDR \
    REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=$STATE_DIR/registry \
    REGISTRY_STORAGE_DELETE_ENABLED=true \
    nohup docker-registry serve '$ROOT/ci/registry.yml' >'$STATE_DIR/registry.log' 2>&1 &"
  for _ in $(seq 1 30); do
    curl -fsS "http://$REGISTRY_ADDR/v2/" >/dev/null 2>&1 && { info "registry up"; return; }
    sleep 1
  done
  tail -n 30 "$STATE_DIR/registry.log" >&2 || true
  die "registry did not answer on $REGISTRY_ADDR within 30 s"
}

import_base_image() {
  step "Offline base image $BASE_IMAGE (debootstrap --variant=minbase bookworm)"
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    info "$BASE_IMAGE present"
    return
  fi
  local rootfs
  rootfs=$(mktemp -d /var/tmp/rmodelpack-rootfs.XXXXXX)
  info "debootstrap into $rootfs (about a minute)"
  as_root debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian \
    >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; die "debootstrap failed"; }
  # Make it look like the official slim image: security updates, no apt caches.
  as_root sh -c "cat >'$rootfs/etc/apt/sources.list' <<'EOF'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF"
  as_root rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  as_root tar -C "$rootfs" -c . | docker import \
    --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    - "$BASE_IMAGE" >/dev/null
  as_root rm -rf "$rootfs" "$rootfs.log"
  info "imported $BASE_IMAGE"
}

train_examples() {
  step "Example models (examples/*/train.R, deterministic)"
  local train dir
  for train in "$ROOT"/examples/*/train.R; do
    [ -e "$train" ] || continue
    dir=$(dirname "$train")
    if [ -f "$dir/model.rds" ] && [ "$dir/model.rds" -nt "$train" ]; then
      info "$(basename "$dir"): model.rds up to date"
      continue
    fi
    info "$(basename "$dir"): training"
    (cd "$dir" && Rscript --vanilla train.R) || die "training $(basename "$dir") failed"
  done
}

build_cluster_binaries() {
  step "Offline Kubernetes control plane binaries (ci/cluster.sh build: etcd, kube-*, kubectl, kwok)"
  bash "$ROOT/ci/cluster.sh" build
}

summary() {
  local r plumber helm helm3 ct kc rg dock
  r=$(Rscript -e 'cat(as.character(getRversion()))' 2>/dev/null)
  plumber=$(Rscript -e 'cat(as.character(packageVersion("plumber")))' 2>/dev/null)
  helm=$("$BIN/helm" version --template '{{.Version}}')
  helm3=$("$BIN/helm3" version --template '{{.Version}}')
  ct=$("$BIN/ct" version | awk '/Version/ {print $2}')
  kc=$("$BIN/kubeconform" -v)
  rg=$(node -p "require('$ROOT/.cache/npm/node_modules/@bitnami/readme-generator-for-helm/package.json').version")
  dock=$(docker version --format '{{.Server.Version}}')
  printf '\nsetup ok: R %s, plumber %s, helm %s, helm3 %s, ct %s, kubeconform %s, readme-generator %s, docker %s, registry %s, base %s\n' \
    "$r" "$plumber" "$helm" "$helm3" "$ct" "$kc" "$rg" "$dock" "$REGISTRY_ADDR" "$BASE_IMAGE"
}

main() {
  local started=$SECONDS
  install_apt_packages
  install_python_package
  install_go_tools
  install_readme_generator
  start_dockerd
  start_registry
  import_base_image
  train_examples
  build_cluster_binaries
  summary
  printf 'setup took %ss\n' "$((SECONDS - started))"
}

main "$@"
