#!/usr/bin/env bash
# Usage: deploy-connector.sh [render]
# docker-compose.yml's one-shot `connector` service, run in Connect's own image
# (bash, curl, grep, sed; no python3 there, so not scripts/connector.sh itself):
# what `scripts/connector.sh deploy` does on the host, for the same file.
#   1. render $CONNECTOR_CONFIG (connectors/legacy-orders.json, mounted
#      read-only): every ${VAR} in it replaced by the environment's VAR (the
#      service sets POSTGRES_HOST=postgres ... as scripts/connector.sh reads
#      them; an unset or empty one is an error); its "config" object is the body
#   2. PUT it to $CONNECT_URL/connectors/<name>/config (<name>: $CONNECTOR_NAME,
#      else the file's "name"), which creates or updates the connector; retried
#      while the worker answers 409 (a rebalance) or not at all
#   3. poll /connectors/<name>/status until the connector and every task run;
#      exit 1 when one fails (the status, traces included, is printed) or after
#      $CONNECTOR_WAIT seconds (default 90)
# `render` prints the body of step 1 and exits: scripts/compose-check.sh
# compares it with `scripts/connector.sh render` for the service's environment.
# Writes no file: the service runs read-only.
set -euo pipefail

url="${CONNECT_URL:-http://connect:8083}"; url="${url%/}"
file="${CONNECTOR_CONFIG:-/connector/legacy-orders.json}"
wait="${CONNECTOR_WAIT:-90}"
log()  { printf '[connector] %s\n' "$*" >&2; }
fail() { printf '[connector] error: %s\n' "$*" >&2; exit 1; }

# render: sets name and body. No JSON parser here: the file must be one object
# whose last member is "config" (as every file under connectors/ is), and the
# placeholders stand inside string values (their values are JSON-escaped).
render() {
  local raw rest out="" var val missing=() head re
  [[ -f "$file" ]] || fail "no file $file"
  raw="$(<"$file")"
  rest="$raw"
  re='\$\{([A-Za-z_][A-Za-z0-9_]*)\}'
  while [[ "$rest" =~ $re ]]; do
    var="${BASH_REMATCH[1]}"
    out+="${rest%%"${BASH_REMATCH[0]}"*}"
    rest="${rest#*"${BASH_REMATCH[0]}"}"
    val="${!var-}"
    if [[ -z "$val" ]]; then missing+=("$var"); val="\${$var}"; fi
    val="${val//\\/\\\\}"; val="${val//\"/\\\"}"
    out+="$val"
  done
  out+="$rest"
  (( ${#missing[@]} == 0 )) || fail "$file: placeholder(s) left unset: ${missing[*]} (set them in the service's environment)"
  re='^[[:space:]]*\{(.*)"config"[[:space:]]*:[[:space:]]*(\{.*\})[[:space:]]*\}[[:space:]]*$'
  [[ "$out" =~ $re ]] || fail "$file is not {..., \"config\": {...}} with \"config\" last"
  head="${BASH_REMATCH[1]}"; body="${BASH_REMATCH[2]}"
  name="${CONNECTOR_NAME:-}"
  if [[ -z "$name" ]]; then
    re='"name"[[:space:]]*:[[:space:]]*"([^"]*)"'
    [[ "$head" =~ $re ]] && name="${BASH_REMATCH[1]}"
  fi
  [[ "$name" =~ ^[A-Za-z0-9._-]+$ ]] || fail "$file: no plain connector \"name\" (found '$name'; or set CONNECTOR_NAME)"
}

render
if [[ "${1:-}" == render ]]; then printf '%s\n' "$body"; exit 0; fi
(( $# == 0 )) || { echo "usage: deploy-connector.sh [render]" >&2; exit 2; }
base="$url/connectors/$name"

# call METHOD URL [curl args]: sets code and resp.
call() {
  local out
  out="$(curl -sS --max-time 30 -w '\n%{http_code}' -X "$1" -H 'Content-Type: application/json' "${@:3}" "$2")" \
    || out=$'\n000'
  code="${out##*$'\n'}"; resp="${out%$'\n'*}"
}

deadline=$((SECONDS + wait))
while :; do
  call PUT "$base/config" --data-binary "$body"
  case "$code" in
    201) log "created connector $name on $url"; break ;;
    200) log "updated connector $name on $url"; break ;;
    000|409|5??) ;;
    *) printf '%s\n' "$resp" >&2; fail "PUT $base/config answered $code" ;;
  esac
  (( SECONDS < deadline )) || { printf '%s\n' "$resp" >&2; fail "PUT $base/config answered $code for ${wait}s"; }
  sleep 2
done

states=""
while :; do
  call GET "$base/status"
  if [[ "$code" == 200 ]]; then
    # The connector's state first, then each task's (a trace's quotes are escaped).
    states="$(grep -oE '"state" *: *"[A-Z_]+"' <<<"$resp" | sed -E 's/.*"([A-Z_]+)"$/\1/' | tr '\n' ' ')"
    read -r -a all <<<"$states"
    if [[ " $states " == *" FAILED "* ]]; then
      printf '%s\n' "$resp" >&2; fail "connector $name failed (states: $states)"
    fi
    running=1
    for s in "${all[@]}"; do [[ "$s" == RUNNING ]] || running=0; done
    if (( ${#all[@]} >= 2 && running )); then
      log "connector $name and its $(( ${#all[@]} - 1 )) task(s): RUNNING"
      exit 0
    fi
  fi
  (( SECONDS < deadline )) || { printf '%s\n' "$resp" >&2; fail "connector $name is not running after ${wait}s (states: ${states:-none}; HTTP $code)"; }
  sleep 1
done
