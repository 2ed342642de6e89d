#!/usr/bin/env bash
# rmodelpack's server entry point (PID 1's child under tini in the image; run directly natively).
# Starts the R supervisor (model once, forked workers), then nginx in front of the workers.
# SIGTERM: /readyz turns 503 at once, requests keep being served for RMP_DRAIN seconds (so load
# balancers can notice), then nginx quits gracefully (in-flight requests finish, at most
# RMP_TIMEOUT seconds), then the R processes stop. If the supervisor or nginx dies, so do we.
set -euo pipefail

RUNTIME_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export RMP_CONFIG="${RMP_CONFIG:-/opt/rmodelpack/app/rmodelpack.json}"
export RMP_TMPDIR="${RMP_TMPDIR:-/tmp}"

log() { printf 'rmodelpack: %s\n' "$*" >&2; }

find_nginx() {
  if command -v nginx >/dev/null 2>&1; then command -v nginx
  elif [ -x /usr/sbin/nginx ]; then echo /usr/sbin/nginx
  else log "nginx not found on PATH or at /usr/sbin/nginx"; exit 1
  fi
}

NGINX="$(find_nginx)"
if ! RUN_DIR="$(mkdir -p "$RMP_TMPDIR" && mktemp -d "$RMP_TMPDIR/rmodelpack.XXXXXX")"; then
  log "cannot create the run directory in $RMP_TMPDIR (a read-only filesystem?): mount a" \
    "writable volume there (the chart mounts an emptyDir at /tmp), or set RMP_TMPDIR"
  exit 1
fi
export RMP_RUN_DIR="$RUN_DIR"
# R's own tempdir goes below the run directory too, so a read-only root filesystem works.
mkdir -p "$RUN_DIR/tmp"
export TMPDIR="$RUN_DIR/tmp"

# glibc raises its mmap threshold to the size of the largest block freed so far (up to 32 MB),
# after which big temporaries (e.g. the forest copies randomForest's predict() makes) land in
# the brk heap and are never handed back to the OS. A fixed threshold turns that rise off, so a
# freed big vector is unmapped at once; R reads these at start, so they must be set here.
export MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-262144}"
export MALLOC_TRIM_THRESHOLD_="${MALLOC_TRIM_THRESHOLD_:-1048576}"

SUPERVISOR_PID=""
NGINX_PID=""
SHUTTING_DOWN=0

# One pid per line: the workers (the w<i>.up files have no trailing newline), and a model
# loader at work with the workers it has forked so far (supervisor.R).
r_child_pids() {
  local file
  for file in "$RUN_DIR"/w*.up "$RUN_DIR/loader.pid" "$RUN_DIR/loader.forked"; do
    [ -f "$file" ] && printf '%s\n' "$(cat "$file")"
  done
  return 0
}

stop_r() {
  local pids
  pids="$(r_child_pids)"
  [ -n "$SUPERVISOR_PID" ] && kill -TERM "$SUPERVISOR_PID" 2>/dev/null || true
  # shellcheck disable=SC2086
  [ -n "$pids" ] && kill -TERM $pids 2>/dev/null || true
  wait "$SUPERVISOR_PID" 2>/dev/null || true
}

cleanup() { rm -rf "$RUN_DIR"; }

# nginx's worker process outlives a SIGKILLed master and would keep the port half-alive (in a
# container everything dies with us; natively it would not). It holds the run directory's
# nginx-answers.log open, which finds it without matching any process name.
kill_orphaned_nginx() {
  local fd pid
  for fd in $(find /proc/[0-9]*/fd -maxdepth 1 -lname "$RUN_DIR/nginx-answers.log" 2>/dev/null); do
    pid="${fd#/proc/}"
    pid="${pid%%/*}"
    [ "$pid" != "$$" ] && kill -KILL "$pid" 2>/dev/null
  done
  return 0
}

# wait_gone PID SECONDS: true once PID has exited, false if it is still there after SECONDS.
# Counted in sleeps, not on the wall clock ($SECONDS), which a clock step would stretch or cut.
wait_gone() {
  local pid=$1 tries=$(($2 * 10))
  while kill -0 "$pid" 2>/dev/null; do
    [ "$tries" -le 0 ] && return 1
    tries=$((tries - 1))
    sleep 0.1
  done
}

drain_and_exit() {
  # A second signal during the drain must not start it again (and stretch the shutdown).
  [ "$SHUTTING_DOWN" -eq 1 ] && return
  SHUTTING_DOWN=1
  touch "$RUN_DIR/draining"
  rm -f "$RUN_DIR/ready"
  local drain=0 timeout=0
  if [ -f "$RUN_DIR/shutdown.env" ]; then
    # shellcheck disable=SC1091
    . "$RUN_DIR/shutdown.env"
    drain=$RMP_DRAIN
    timeout=$RMP_TIMEOUT
  fi
  log "SIG$1: /readyz is 503; serving for ${drain}s more, then finishing in-flight requests"
  sleep "$drain"
  if [ -n "$NGINX_PID" ]; then
    kill -QUIT "$NGINX_PID" 2>/dev/null || true
    if ! wait_gone "$NGINX_PID" "$timeout"; then
      log "requests still running after ${timeout}s; stopping nginx now"
      kill -TERM "$NGINX_PID" 2>/dev/null || true
    fi
    wait "$NGINX_PID" 2>/dev/null || true
  fi
  stop_r
  cleanup
  log "stopped"
  exit 0
}

trap 'drain_and_exit TERM' TERM
trap 'drain_and_exit INT' INT

start_supervisor() {
  Rscript --vanilla "$RUNTIME_DIR/supervisor.R" &
  SUPERVISOR_PID=$!
}

wait_for_nginx_conf() {
  while [ ! -f "$RUN_DIR/nginx.conf" ]; do
    if ! kill -0 "$SUPERVISOR_PID" 2>/dev/null; then
      local status=0
      wait "$SUPERVISOR_PID" || status=$?
      cleanup
      log "the supervisor exited (status $status) before it wrote the nginx config"
      exit "$((status == 0 ? 1 : status))"
    fi
    sleep 0.05
  done
}

start_nginx() {
  "$NGINX" -p "$RUN_DIR/nginx" -c "$RUN_DIR/nginx.conf" -e stderr &
  NGINX_PID=$!
}

main() {
  start_supervisor
  wait_for_nginx_conf
  start_nginx
  local status=0
  # Returns when either process exits, or early when a trapped signal arrives.
  wait -n "$SUPERVISOR_PID" "$NGINX_PID" || status=$?
  [ "$SHUTTING_DOWN" -eq 1 ] && return
  log "a core process exited (status $status); stopping so the container is restarted"
  rm -f "$RUN_DIR/ready"
  kill -TERM "$NGINX_PID" 2>/dev/null || true
  kill_orphaned_nginx
  stop_r
  cleanup
  # 2: the supervisor's configuration error (a model or script the loader could not use).
  exit "$((status == 2 ? 2 : 1))"
}

main
