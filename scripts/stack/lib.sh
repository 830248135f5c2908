# Shared helpers for the native stack scripts. Sourced, never run.
# Every component lives in components/<name>.sh and defines three functions,
# with "-" in the name turned into "_":
#   <name>_install   fetch and prepare it under $STACK_DIR/dist/<name> (idempotent)
#   <name>_start     launch it in the background with start_daemon
#   <name>_health    exit 0 when it answers as a healthy server
# and may set <NAME>_START_TIMEOUT (seconds, default 120) and define
#   <name>_post_start  run by start once it is healthy (also when it was already
#                      running): idempotent set-up that needs the server, e.g. users
set -euo pipefail

STACK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STACK_DIR="${STACK_DIR:-$STACK_ROOT/.stack}"
STACK_SCRIPTS="$STACK_ROOT/scripts/stack"
STACK_BIND="${STACK_BIND:-127.0.0.1}"

# Fixed default ports; each can be overridden from the environment.
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_SASL_PORT="${KAFKA_SASL_PORT:-9094}"
KAFKA_SSL_PORT="${KAFKA_SSL_PORT:-9095}"
ES_PORT="${ES_PORT:-9200}"
ES_TRANSPORT_PORT="${ES_TRANSPORT_PORT:-9300}"
CLICKHOUSE_HTTP_PORT="${CLICKHOUSE_HTTP_PORT:-8123}"
CLICKHOUSE_TCP_PORT="${CLICKHOUSE_TCP_PORT:-9000}"
SCHEMA_REGISTRY_PORT="${SCHEMA_REGISTRY_PORT:-8081}"

# Throwaway credentials of the secured side (tests only; see scripts/stack/env).
KAFKA_SCRAM_USER="${KAFKA_SCRAM_USER:-gateway}"
KAFKA_SCRAM_PASSWORD="${KAFKA_SCRAM_PASSWORD:-gateway-scram-secret}"
CLICKHOUSE_TLS_USER="${CLICKHOUSE_TLS_USER:-gateway_tls}"
CLICKHOUSE_TLS_PASSWORD="${CLICKHOUSE_TLS_PASSWORD:-gateway-tls-secret}"

# Every component the stack knows, in start order.
STACK_COMPONENTS=(kafka schema-registry elasticsearch clickhouse k6)

log()  { printf '[stack] %s\n' "$*" >&2; }
fail() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

fn_name() { printf '%s' "${1//-/_}"; }
dist_dir() { printf '%s/dist/%s' "$STACK_DIR" "$1"; }
data_dir() { printf '%s/data/%s' "$STACK_DIR" "$1"; }
log_file() { printf '%s/logs/%s.log' "$STACK_DIR" "$1"; }
pid_file() { printf '%s/run/%s.pid' "$STACK_DIR" "$1"; }

load_component() {
  local name="$1" f="$STACK_SCRIPTS/components/$1.sh"
  [[ -f "$f" ]] || fail "unknown component '$name' (known: ${STACK_COMPONENTS[*]})"
  # shellcheck source=/dev/null
  source "$f"
}

# start_daemon NAME CMD...: run CMD detached in its own session, output to the
# component's log, its pid recorded so that stop kills exactly this process tree.
start_daemon() {
  local name="$1"; shift
  mkdir -p "$STACK_DIR/logs" "$STACK_DIR/run" "$(data_dir "$name")"
  local log; log="$(log_file "$name")"
  printf '\n===== %s start %s =====\n' "$name" "$(date -u +%FT%TZ)" >>"$log"
  setsid "$@" >>"$log" 2>&1 < /dev/null &
  echo $! >"$(pid_file "$name")"
}

# Pid of a running component, or nothing.
running_pid() {
  local pf; pf="$(pid_file "$1")"
  [[ -f "$pf" ]] || return 1
  local pid; pid="$(cat "$pf")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && { printf '%s' "$pid"; return 0; }
  return 1
}

# stop_daemon NAME: TERM the process group started by start_daemon, KILL after a grace period.
stop_daemon() {
  local name="$1" pid
  if ! pid="$(running_pid "$name")"; then
    rm -f "$(pid_file "$name")"
    return 0
  fi
  log "stopping $name (pid $pid)"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  local i
  for i in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name did not stop within 30s, killing it"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  # The group may hold children that outlived the leader (a JVM's forks, the launcher's helpers).
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$(pid_file "$name")"
}

# wait_healthy NAME TIMEOUT: poll NAME's health check; fail naming the component
# and its log when the process dies or the time runs out.
wait_healthy() {
  local name="$1" timeout="$2" fn; fn="$(fn_name "$name")"
  local deadline=$((SECONDS + timeout))
  while (( SECONDS < deadline )); do
    if "${fn}_health" >/dev/null 2>&1; then return 0; fi
    if ! running_pid "$name" >/dev/null; then
      tail -n 30 "$(log_file "$name")" >&2 || true
      fail "$name exited during start-up; see $(log_file "$name")"
    fi
    sleep 1
  done
  tail -n 30 "$(log_file "$name")" >&2 || true
  fail "$name was not healthy within ${timeout}s; see $(log_file "$name")"
}

http_ok() { curl -fsS --max-time 3 -o /dev/null "$1"; }

# Fetch one artifact (with its dependencies when asked) from Maven Central into DIR.
# maven_copy_deps POM_DIR OUT_DIR: resolve the dependencies of a small pom we ship.
maven_copy_deps() {
  local pom_dir="$1" out="$2"
  mkdir -p "$out"
  mvn -B -q -Dstyle.color=never -f "$pom_dir/pom.xml" \
    org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
    -DoutputDirectory="$out" -DincludeScope=runtime >&2
}

# The stack's throwaway certificates: STACK_TLS_DIR, tls_ensure.
# shellcheck source=tls.sh
source "$STACK_SCRIPTS/tls.sh"
