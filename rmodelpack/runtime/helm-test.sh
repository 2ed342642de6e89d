#!/usr/bin/env bash
# The chart's `helm test` check (the test pod runs it from the model image): the release answers
# /readyz through its Service, scores the sample request with the documented
# {"predictions": [...]} shape (one prediction per row), and, when asked, does the same through
# the ingress controller with the public host name, checking that auth is enforced.
#
# Usage: helm-test.sh [--ready-retries N]
#   --ready-retries N  retry /readyz this many times, 2 s apart, while nothing answers or it
#                      answers 5xx (default 5)
# Environment:
#   SERVICE_URL      the release's Service, e.g. http://boston.models.svc:80
#   PREDICT_BODY     JSON POSTed to /predict ([{...}] or {"data": [{...}]}); empty: /readyz only
#   PUBLIC_URL       optional: scheme and host the ingress serves, e.g. https://boston.example.com
#                    (port 443 for https, 80 for http unless given); empty: the Service only
#   INGRESS_SERVICE  with PUBLIC_URL: the controller's in-cluster host name, reached on that port
#   AUTH_USERNAME, AUTH_PASSWORD  with PUBLIC_URL: credentials; when set, the ingress must answer
#                    401 without them
# Exit status: 0 every check passed; 1 a check failed (one line on stderr says which and why);
# 2 bad usage.
set -euo pipefail

readonly CONNECT_TIMEOUT_SECONDS=10
readonly REQUEST_TIMEOUT_SECONDS=120

log() { printf 'helm-test: %s\n' "$*" >&2; }
fail() { log "$*"; exit 1; }
usage_error() { log "$*"; exit 2; }

ready_retries=5
while [ $# -gt 0 ]; do
  case "$1" in
    --ready-retries)
      [[ "${2:-}" =~ ^[0-9]+$ ]] || usage_error "--ready-retries needs a whole number, got '${2:-}'"
      ready_retries="$2"
      shift 2
      ;;
    *) usage_error "unknown argument '$1' (usage: helm-test.sh [--ready-retries N])" ;;
  esac
done

# --- HTTP ------------------------------------------------------------------------------------

errors="$(mktemp "${TMPDIR:-/tmp}/helm-test.XXXXXX")"
trap 'rm -f "$errors"' EXIT

# request URL [curl options...]: sets $status (HTTP code) and $body; on a transport failure sets
# $transport_error to curl's one-line message and returns curl's exit code. -q (first) skips any
# .curlrc; --url keeps a URL starting with '-' from being read as an option.
request() {
  local url="$1" output rc=0
  shift
  output="$(curl -q --silent --show-error --connect-timeout "$CONNECT_TIMEOUT_SECONDS" \
    --max-time "$REQUEST_TIMEOUT_SECONDS" --write-out '\n%{http_code}' "$@" --url "$url" \
    2>"$errors")" || rc=$?
  status="${output##*$'\n'}"
  body="${output%$'\n'*}"
  transport_error="$(tr '\n' ' ' <"$errors" | sed 's/ *$//')"
  return "$rc"
}

# The first 300 characters of the answer, on one line: enough to show the server's error message.
excerpt() { printf '%s' "$1" | tr '\n\r' '  ' | cut -c1-300; }

# Counts the items of the first JSON array in stdin (strings and nesting aware); exits 1 when
# there is no complete array. With "object_ends_after" the array must be followed by the closing
# "}" of its object and nothing else (exit 2 otherwise).
count_first_array_items() {
  awk -v object_ends_after="${1:-}" '
    { text = text $0 "\n" }
    END {
      n = length(text); depth = 0; start = 0; commas = 0; seen = 0; in_string = 0; escaped = 0
      for (i = 1; i <= n; i++) {
        c = substr(text, i, 1)
        if (in_string) {
          if (escaped) escaped = 0
          else if (c == "\\") escaped = 1
          else if (c == "\"") in_string = 0
          continue
        }
        if (c == "\"") { in_string = 1; if (start && depth == start) seen = 1; continue }
        if (c == "[" || c == "{") {
          depth++
          if (!start && c == "[") start = depth
          else if (start && depth == start + 1) seen = 1
          continue
        }
        if (c == "]" || c == "}") {
          if (start && depth == start) {
            if (object_ends_after && substr(text, i + 1) !~ /^[ \t\r\n]*}[ \t\r\n]*$/) exit 2
            print commas + seen
            exit 0
          }
          depth--
          continue
        }
        if (start && depth == start) {
          if (c == ",") { commas++; seen = 0 }
          else if (c !~ /[ \t\r\n]/) seen = 1
        }
      }
      exit 1
    }'
}

# --- checks ----------------------------------------------------------------------------------

check_ready() {
  local url="$1" where="$2"
  shift 2
  if ! request "$url/readyz" --retry "$ready_retries" --retry-connrefused --retry-delay 2 "$@"; then
    fail "GET $url/readyz ($where) failed: $transport_error: no model pod answers; check that the Deployment has ready pods (kubectl get pods) and their logs"
  fi
  fail_unless_ok "GET $url/readyz ($where)"
}

# fail_unless_ok WHAT: the one-line reason for an answer that is not 200.
fail_unless_ok() {
  case "$status" in
    200) return 0 ;;
    401) fail "$1 answered HTTP 401: the credentials from tests.ingress.credentialsSecret are missing or not among auth's users" ;;
    5??) fail "$1 answered HTTP $status: the model server is not ready or failed; see the model pod's log ($(excerpt "$body"))" ;;
    *) fail "$1 answered HTTP $status, not 200: $(excerpt "$body")" ;;
  esac
}

# check_predict URL WHERE [curl options...]: a real /predict with PREDICT_BODY, whose answer must
# be exactly {"predictions": [...]} with one prediction per row.
check_predict() {
  local url="$1" where="$2" predictions rc=0
  shift 2
  # The body goes through stdin: a body starting with '@' would otherwise name a file to send.
  if ! request "$url/predict" -H 'Content-Type: application/json' --data-binary @- "$@" \
    <<<"$PREDICT_BODY"; then
    fail "POST $url/predict ($where) failed: $transport_error"
  fi
  fail_unless_ok "POST $url/predict ($where)"
  local shape='^[[:space:]]*[{][[:space:]]*"predictions"[[:space:]]*:[[:space:]]*\['
  predictions="$(printf '%s' "$body" | count_first_array_items object_ends_after)" || rc=$?
  if [ "$rc" -ne 0 ] || ! [[ "$body" =~ $shape ]]; then
    fail "POST $url/predict ($where) answered 200 but not {\"predictions\": [...]}: is an rmodelpack model behind it? ($(excerpt "$body"))"
  fi
  [ "$predictions" = "$rows" ] ||
    fail "POST $url/predict ($where) answered $predictions predictions for the $rows rows of tests.predictBody"
  echo "predict $where ok ($predictions predictions)"
}

check_auth_enforced() {
  local url="$1"
  shift
  request "$url/readyz" "$@" || fail "GET $url/readyz (through the ingress, no credentials) failed: $transport_error"
  [ "$status" = 401 ] || fail "GET $url/readyz through the ingress without credentials answered HTTP $status, expected 401: auth is not enforced"
  echo "auth required ok"
}

# --- main ------------------------------------------------------------------------------------

# The ingress route, when asked for: the public name is sent (Host header, TLS SNI) but the
# connection goes to the controller's Service on the same port; -k: the certificate may come from
# a staging or self-signed issuer.
parse_ingress_route() {
  [[ "$PUBLIC_URL" =~ ^(https?)://([A-Za-z0-9.-]+)(:([0-9]+))?/?$ ]] ||
    usage_error "PUBLIC_URL '$PUBLIC_URL' is not http(s)://<host>[:port]: set ingress.host"
  local scheme="${BASH_REMATCH[1]}" host="${BASH_REMATCH[2]}" port="${BASH_REMATCH[4]}"
  [ -n "$port" ] || { [ "$scheme" = https ] && port=443 || port=80; }
  [ -n "${INGRESS_SERVICE:-}" ] || usage_error "INGRESS_SERVICE is empty: set tests.ingress.service to the ingress controller's Service host name"
  public="$scheme://$host:$port"
  route=(-k --connect-to "$host:$port:$INGRESS_SERVICE:$port")
}

[ -n "${SERVICE_URL:-}" ] || usage_error "SERVICE_URL is empty: set it to the release's Service URL (http://<name>.<namespace>.svc:<port>)"
PREDICT_BODY="${PREDICT_BODY:-}"
PUBLIC_URL="${PUBLIC_URL:-}"
rows=""
if [ -n "$PREDICT_BODY" ]; then
  rows="$(printf '%s' "$PREDICT_BODY" | count_first_array_items)" ||
    usage_error "PREDICT_BODY (tests.predictBody) holds no JSON array of rows: set it to [{...}] or {\"data\": [{...}]}"
fi
[ -z "$PUBLIC_URL" ] || parse_ingress_route

check_ready "$SERVICE_URL" "through the Service"
echo "readyz ok"
[ -z "$PREDICT_BODY" ] || check_predict "$SERVICE_URL" "through the Service"

if [ -n "$PUBLIC_URL" ]; then
  credentials=()
  if [ -n "${AUTH_USERNAME:-}" ]; then
    check_auth_enforced "$public" "${route[@]}"
    credentials=(--user "$AUTH_USERNAME:${AUTH_PASSWORD:-}")
  fi
  check_ready "$public" "through the ingress" "${route[@]}" ${credentials[@]+"${credentials[@]}"}
  echo "readyz through the ingress ok"
  [ -z "$PREDICT_BODY" ] || check_predict "$public" "through the ingress" "${route[@]}" ${credentials[@]+"${credentials[@]}"}
  echo "through the ingress ($public via $INGRESS_SERVICE) ok"
fi
