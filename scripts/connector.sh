#!/usr/bin/env bash
# Usage: scripts/connector.sh deploy|status|delete|restart|render [FILE]
# Kafka Connect connectors from a JSON file ({"name": ..., "config": {...}}; default
# connectors/legacy-orders.json) on the stack's Connect worker (scripts/stack/components/connect.sh).
#   deploy   PUT the config to $CONNECT_URL/connectors/<name>/config (creates or updates it),
#            then wait until the connector and its tasks run (CONNECTOR_WAIT seconds,
#            default 60; 0: don't wait); non-zero when it fails or does not start
#   status   the connector's state, each task's, the first lines of a failed task's trace;
#            exit 0 only when the connector and every task are RUNNING
#   restart  restart the connector and its tasks, then wait as deploy does
#   delete   stop the connector, reset its offsets (a connector made again under the same
#            name snapshots anew), delete it, then drop its replication slot (slot.name in
#            database.dbname on database.hostname, as the CDC user) so that PostgreSQL keeps
#            no WAL for it
#   render   print the config with the placeholders substituted (what deploy sends)
# Placeholders ${VAR} in the file come from the environment; unset, these have the stack's
# values (scripts/stack/env's STACK_* first, then scripts/stack/lib.sh's):
#   POSTGRES_HOST=127.0.0.1  POSTGRES_PORT=5432  POSTGRES_CDC_USER=debezium
#   POSTGRES_CDC_PASSWORD=debezium-secret  POSTGRES_DB=legacy
#   CDC_TOPIC_PREFIX=legacy  CDC_SLOT=legacy_orders
# Any other placeholder must be set, or nothing is sent. CONNECTOR_NAME replaces the file's
# "name"; CONNECT_URL (default $STACK_CONNECT_URL, else http://127.0.0.1:8083) the worker.
# A test's own connector on its own database, e.g.:
#   CONNECTOR_NAME=it-cdc-1 POSTGRES_DB=it_cdc_1 CDC_SLOT=it_cdc_1 CDC_TOPIC_PREFIX=it_cdc_1 \
#     scripts/connector.sh deploy
# (a replication slot's name is unique in the whole PostgreSQL server: one per connector).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: scripts/connector.sh deploy|status|delete|restart|render [FILE]" >&2; exit 2; }
(( $# >= 1 && $# <= 2 )) || usage
cmd="$1"; file="${2:-connectors/legacy-orders.json}"
case "$cmd" in deploy|status|delete|restart|render) ;; *) usage ;; esac
[[ -f "$file" ]] || { echo "[connector] error: no file $file" >&2; exit 2; }

# What scripts/stack/env exported wins over lib.sh's defaults (a stack on other ports).
POSTGRES_PORT="${POSTGRES_PORT:-${STACK_POSTGRES_PORT:-}}"
POSTGRES_CDC_USER="${POSTGRES_CDC_USER:-${STACK_CDC_USER:-}}"
POSTGRES_CDC_PASSWORD="${POSTGRES_CDC_PASSWORD:-${STACK_CDC_PASSWORD:-}}"
POSTGRES_DB="${POSTGRES_DB:-${STACK_POSTGRES_DB:-}}"
source scripts/stack/lib.sh
log()  { printf '[connector] %s\n' "$*" >&2; }
fail() { printf '[connector] error: %s\n' "$*" >&2; exit 1; }
export POSTGRES_HOST="${POSTGRES_HOST:-${STACK_POSTGRES_HOST:-$STACK_BIND}}"
export POSTGRES_PORT POSTGRES_CDC_USER POSTGRES_CDC_PASSWORD POSTGRES_DB
export CDC_TOPIC_PREFIX="${CDC_TOPIC_PREFIX:-legacy}"
export CDC_SLOT="${CDC_SLOT:-legacy_orders}"
CONNECT_URL="${CONNECT_URL:-${STACK_CONNECT_URL:-http://$STACK_BIND:$CONNECT_PORT}}"
CONNECT_URL="${CONNECT_URL%/}"
CONNECTOR_WAIT="${CONNECTOR_WAIT:-60}"

# The JSON work, in one place: render FILE, status (a status document on stdin), field KEY.
py() {
  python3 -c '
import json, os, re, sys

def render(path):
    doc = json.load(open(path))
    if not isinstance(doc.get("config"), dict):
        sys.exit(f"[connector] error: {path} has no \"config\" object")
    missing = []
    def sub(value):
        if not isinstance(value, str):
            return value
        def one(m):
            v = os.environ.get(m.group(1))
            if v is None or v == "":
                missing.append(m.group(1))
                return m.group(0)
            return v
        return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", one, value)
    config = {k: sub(v) for k, v in doc["config"].items()}
    name = os.environ.get("CONNECTOR_NAME") or doc.get("name")
    if missing:
        sys.exit(f"[connector] error: {path}: placeholder(s) left unset: "
                 + ", ".join(dict.fromkeys(missing)) + " (set them in the environment)")
    if not name:
        sys.exit(f"[connector] error: {path} has no \"name\" (or set CONNECTOR_NAME)")
    config["name"] = name
    print(json.dumps({"name": name, "config": config}, indent=2))

def status():
    s = json.load(sys.stdin)
    c = s.get("connector", {})
    ok = c.get("state") == "RUNNING"
    print("connector %s (%s): %s on %s" % (s.get("name"), s.get("type", "?"), c.get("state"), c.get("worker_id")))
    if c.get("trace"):
        for line in c["trace"].splitlines()[:8]:
            print("    " + line)
    tasks = s.get("tasks", [])
    if not tasks:
        print("  no tasks (yet)")
        ok = False
    for t in sorted(tasks, key=lambda t: t.get("id", 0)):
        print("  task %s: %s on %s" % (t.get("id"), t.get("state"), t.get("worker_id")))
        if t.get("state") != "RUNNING":
            ok = False
        if t.get("trace"):
            for line in t["trace"].splitlines()[:8]:
                print("    " + line)
    states = [c.get("state")] + [t.get("state") for t in tasks]
    # 0 running, 1 failed, 2 anything else (starting, paused, stopped)
    sys.exit(0 if ok else 1 if "FAILED" in states else 2)

def field(key):
    v = json.load(sys.stdin)
    for k in key.split("/"):
        v = v.get(k, "") if isinstance(v, dict) else ""
    print(v)

{"render": lambda: render(sys.argv[2]), "status": status,
 "field": lambda: field(sys.argv[2])}[sys.argv[1]]()
' "$@"
}

spec="$(py render "$file")" || exit 1
name="$(py field name <<<"$spec")"
config="$(python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["config"]))' <<<"$spec")"
cfg() { py field "config/$1" <<<"$spec"; }
enc="$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$name")"
base="$CONNECT_URL/connectors/$enc"

# http METHOD URL [BODY]: sets HTTP_CODE and HTTP_BODY (the response).
http() {
  local out; out="$(mktemp)"
  HTTP_CODE="$(curl -sS --max-time 30 -o "$out" -w '%{http_code}' -X "$1" -H 'Content-Type: application/json' \
    ${3:+--data-binary "$3"} "$2")" || { rm -f "$out"; fail "Kafka Connect does not answer at $CONNECT_URL (scripts/stack/start connect)"; }
  HTTP_BODY="$(cat "$out")"; rm -f "$out"
}

# show_status: print the status; its exit code is py status's (0 running, 1 failed, 2 other).
show_status() {
  http GET "$base/status"
  if [[ "$HTTP_CODE" == 404 ]]; then echo "connector $name is not deployed on $CONNECT_URL"; return 3; fi
  [[ "$HTTP_CODE" == 200 ]] || { echo "$HTTP_BODY" >&2; fail "GET $base/status answered $HTTP_CODE"; }
  py status <<<"$HTTP_BODY"
}

# wait_running: poll until RUNNING (0), FAILED (1) or CONNECTOR_WAIT seconds.
wait_running() {
  (( CONNECTOR_WAIT > 0 )) || return 0
  local deadline=$((SECONDS + CONNECTOR_WAIT)) out rc
  while :; do
    rc=0; out="$(show_status 2>&1)" || rc=$?
    if (( rc == 0 )); then printf '%s\n' "$out"; return 0; fi
    if (( rc == 1 )); then printf '%s\n' "$out"; fail "connector $name failed"; fi
    if (( SECONDS >= deadline )); then printf '%s\n' "$out"; fail "connector $name is not running after ${CONNECTOR_WAIT}s"; fi
    sleep 1
  done
}

# drop_slot: drop the connector's replication slot, waiting while its walsender ends.
drop_slot() {
  local slot host port user pw db
  slot="$(cfg slot.name)"; host="$(cfg database.hostname)"; port="$(cfg database.port)"
  user="$(cfg database.user)"; pw="$(cfg database.password)"; db="$(cfg database.dbname)"
  [[ -n "$slot" && -n "$host" ]] || return 0
  local sql="SELECT pg_drop_replication_slot('$slot') FROM pg_replication_slots WHERE slot_name = '$slot' AND NOT active;"
  if ! command -v psql >/dev/null; then
    log "psql is not installed: drop the replication slot yourself, or PostgreSQL keeps WAL for it:"
    log "  PGPASSWORD=... psql -h $host -p ${port:-5432} -U $user -d $db -c \"$sql\""
    return 0
  fi
  local deadline=$((SECONDS + 30)) state dropped=0
  while :; do
    state="$(PGPASSWORD="$pw" psql -X -q -At -v ON_ERROR_STOP=1 -h "$host" -p "${port:-5432}" -U "$user" -d "$db" -v slot="$slot" 2>&1 <<'SQL'
SELECT CASE WHEN active THEN 'active' ELSE 'inactive' END FROM pg_replication_slots WHERE slot_name = :'slot';
SQL
)" || { log "could not look up replication slot $slot in $db on $host:$port ($state); drop it yourself: $sql"; return 1; }
    case "$state" in
      "")
        if (( dropped )); then log "dropped replication slot $slot (database $db)"
        else log "no replication slot $slot in database $db"; fi
        return 0 ;;
      inactive)
        PGPASSWORD="$pw" psql -X -q -At -v ON_ERROR_STOP=1 -h "$host" -p "${port:-5432}" -U "$user" -d "$db" \
          -v slot="$slot" >/dev/null <<'SQL' && dropped=1 || true
SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = :'slot' AND NOT active;
SQL
        ;;
      *) (( SECONDS < deadline )) || { log "replication slot $slot is still in use after 30 s; drop it once free: $sql"; return 1; } ;;
    esac
    sleep 0.5
  done
}

case "$cmd" in
  render)
    printf '%s\n' "$spec"
    ;;
  deploy)
    http PUT "$base/config" "$config"
    case "$HTTP_CODE" in
      201) log "created connector $name on $CONNECT_URL" ;;
      200) log "updated connector $name on $CONNECT_URL" ;;
      *) echo "$HTTP_BODY" >&2; fail "PUT $base/config answered $HTTP_CODE" ;;
    esac
    wait_running
    ;;
  status)
    show_status
    ;;
  restart)
    http POST "$base/restart?includeTasks=true&onlyFailed=false"
    [[ "$HTTP_CODE" == 202 || "$HTTP_CODE" == 200 || "$HTTP_CODE" == 204 ]] \
      || { echo "$HTTP_BODY" >&2; fail "POST $base/restart answered $HTTP_CODE"; }
    log "restarting connector $name"
    sleep 1
    wait_running
    ;;
  delete)
    http GET "$base/status"
    if [[ "$HTTP_CODE" == 404 ]]; then
      log "connector $name is not deployed on $CONNECT_URL"
    else
      # Stopped (not deleted) first: only a stopped connector's offsets can be reset.
      http PUT "$base/stop"
      [[ "$HTTP_CODE" == 202 || "$HTTP_CODE" == 204 ]] || { echo "$HTTP_BODY" >&2; fail "PUT $base/stop answered $HTTP_CODE"; }
      deadline=$((SECONDS + 30))
      until http GET "$base/status" && [[ "$(py field connector/state <<<"$HTTP_BODY")" == STOPPED ]]; do
        (( SECONDS < deadline )) || fail "connector $name did not stop within 30 s"
        sleep 0.5
      done
      http DELETE "$base/offsets"
      if [[ "$HTTP_CODE" == 200 ]]; then log "reset the offsets of $name: $(py field message <<<"$HTTP_BODY")"
      else log "resetting the offsets of $name answered $HTTP_CODE: $HTTP_BODY"; fi
      http DELETE "$base"
      [[ "$HTTP_CODE" == 204 || "$HTTP_CODE" == 200 ]] || { echo "$HTTP_BODY" >&2; fail "DELETE $base answered $HTTP_CODE"; }
      log "deleted connector $name"
    fi
    drop_slot
    ;;
esac
