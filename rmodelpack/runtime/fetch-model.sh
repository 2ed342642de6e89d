#!/usr/bin/env bash
# Downloads the model for the chart's `model.source: url` (the init container runs it from the
# model image) and installs it as $MODEL_DIR/model.rds only once its sha256 matches, so the pod
# never starts on a wrong or partial model.
#
# Usage: fetch-model.sh [--allow-http]
#   --allow-http  also accept plain http for the URL and its redirects (default: https only)
# Environment:
#   MODEL_URL     the download URL; it carries a SAS token, so it is never printed. Whitespace
#                 around it (a Secret made with --from-file keeps the file's newline) is ignored.
#   MODEL_SHA256  the expected SHA-256 of model.rds (64 lowercase hex digits)
#   MODEL_DIR     the writable folder model.rds goes to
#   MODEL_STALL_SECONDS  give up (and retry) a transfer slower than 1 KiB/s for this long (60)
# Exit status: 0 installed; 1 refused (protocol) or checksum mismatch; 2 bad usage; otherwise
# curl's own exit code (e.g. 22 for an HTTP error, 60 for an untrusted certificate).
set -euo pipefail

log() { printf 'fetch-model: %s\n' "$*" >&2; }
usage_error() { log "$*"; exit 2; }

protocols="=https"
for argument in "$@"; do
  case "$argument" in
    --allow-http) protocols="=http,https" ;;
    *) usage_error "unknown argument '$argument' (usage: fetch-model.sh [--allow-http])" ;;
  esac
done

# Strip surrounding whitespace: `echo $url > f; kubectl create secret --from-file` leaves a newline
# that curl would reject as a malformed URL.
url="${MODEL_URL:-}"
url="${url#"${url%%[![:space:]]*}"}"
url="${url%"${url##*[![:space:]]}"}"
stall_seconds="${MODEL_STALL_SECONDS:-60}"

[ -n "$url" ] || usage_error "MODEL_URL is empty: put the download URL in the Secret named by model.url.existingSecret (key model.url.key)"
[[ "${MODEL_SHA256:-}" =~ ^[0-9a-f]{64}$ ]] || usage_error "MODEL_SHA256 '${MODEL_SHA256:-}' is not 64 lowercase hex digits: set model.sha256 (sha256sum model.rds)"
[[ "$url" != *[[:space:]]* ]] || usage_error "MODEL_URL has whitespace inside it: fix the URL in the Secret named by model.url.existingSecret (key model.url.key)"
[[ "$url" =~ ^[A-Za-z][A-Za-z0-9+.-]*:// ]] || usage_error "MODEL_URL does not start with a scheme (https://...): fix the URL in the Secret named by model.url.existingSecret (key model.url.key)"
[[ "$stall_seconds" =~ ^[1-9][0-9]*$ ]] || usage_error "MODEL_STALL_SECONDS '$stall_seconds' is not a positive whole number of seconds"
[ -d "${MODEL_DIR:-}" ] && [ -w "$MODEL_DIR" ] || usage_error "MODEL_DIR '${MODEL_DIR:-}' is not a writable folder"

# A SIGKILLed earlier attempt (OOM, deleted pod on a reused emptyDir) cannot clean up after itself;
# its leftovers would count against the volume's sizeLimit. Only this script writes them, and an
# init container never runs twice at once in a pod.
rm -f "$MODEL_DIR"/.model.rds.part.*

# The partial download lives beside its destination so the final mv is an atomic rename; it is
# removed on every way out except success.
part="$(mktemp "$MODEL_DIR/.model.rds.part.XXXXXX")"
trap 'rm -f "$part"' EXIT

# curl exits 1 (unsupported protocol) for a URL or a redirect outside $protocols. -q (first) skips
# any .curlrc; --url keeps a URL that starts with '-' from being read as an option. A stalled
# transfer (slower than 1 KiB/s for $stall_seconds s) fails with 28 and is retried like any other.
rc=0
curl -q --fail --silent --show-error --location --retry 3 --retry-delay 2 \
  --connect-timeout 30 --speed-limit 1024 --speed-time "$stall_seconds" \
  --proto "$protocols" --proto-redir "$protocols" --output "$part" --url "$url" || rc=$?
if [ "$rc" -eq 1 ]; then
  if [ "$protocols" = "=https" ]; then
    log "refused: the model URL or a redirect is not https; serve the model over https or set model.url.allowHttp=true"
  else
    log "refused: the model URL or a redirect is neither http nor https; use an http(s) URL in the Secret named by model.url.existingSecret"
  fi
fi
[ "$rc" -eq 0 ] || exit "$rc"

# Read from stdin: for a file name with a backslash sha256sum prefixes its output with '\'.
actual="$(sha256sum < "$part" | cut -d' ' -f1)"
if [ "$actual" != "$MODEL_SHA256" ]; then
  log "sha256 of the downloaded model is $actual, expected $MODEL_SHA256 (model.sha256): the file at the URL is not the model this release was rendered for"
  exit 1
fi
chmod 0644 "$part"
mv -f "$part" "$MODEL_DIR/model.rds"
trap - EXIT
echo "fetch-model: model.rds verified (sha256 $MODEL_SHA256)"
