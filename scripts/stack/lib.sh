# Shared helpers for the native stack scripts. Sourced, never run.
# Every component lives in components/<name>.sh and defines three functions,
# with "-" in the name turned into "_":
#   <name>_install   fetch and prepare it under $STACK_DIST_DIR/<name> (idempotent;
#                    default $STACK_DIR/dist)
#   <name>_start     launch it in the background with start_daemon
#   <name>_health    exit 0 when it answers as a healthy server
# and may set <NAME>_START_TIMEOUT (seconds, default 120) and define
#   <name>_post_start  run by start once it is healthy (also when it was already
#                      running): idempotent set-up that needs the server, e.g. users
set -euo pipefail

STACK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STACK_DIR="${STACK_DIR:-$STACK_ROOT/.stack}"
# Downloads and builds; another stack (a second STACK_DIR) may share them.
STACK_DIST_DIR="${STACK_DIST_DIR:-$STACK_DIR/dist}"
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
POSTGRES_PORT="${POSTGRES_PORT:-5432}"
CONNECT_PORT="${CONNECT_PORT:-8083}"
JAEGER_OTLP_PORT="${JAEGER_OTLP_PORT:-4318}"
JAEGER_QUERY_PORT="${JAEGER_QUERY_PORT:-16686}"
JAEGER_QUERY_GRPC_PORT="${JAEGER_QUERY_GRPC_PORT:-16685}"
JAEGER_HEALTH_PORT="${JAEGER_HEALTH_PORT:-13133}"

# Throwaway credentials of the secured side (tests only; see scripts/stack/env).
KAFKA_SCRAM_USER="${KAFKA_SCRAM_USER:-gateway}"
KAFKA_SCRAM_PASSWORD="${KAFKA_SCRAM_PASSWORD:-gateway-scram-secret}"
CLICKHOUSE_TLS_USER="${CLICKHOUSE_TLS_USER:-gateway_tls}"
CLICKHOUSE_TLS_PASSWORD="${CLICKHOUSE_TLS_PASSWORD:-gateway-tls-secret}"
# PostgreSQL's "legacy" database: its owner, and the replication user Debezium reads it as.
POSTGRES_USER="${POSTGRES_USER:-legacy}"
POSTGRES_PASSWORD="${POSTGRES_PASSWORD:-legacy-secret}"
POSTGRES_DB="${POSTGRES_DB:-legacy}"
POSTGRES_CDC_USER="${POSTGRES_CDC_USER:-debezium}"
POSTGRES_CDC_PASSWORD="${POSTGRES_CDC_PASSWORD:-debezium-secret}"

# Every component the stack knows, in start order.
STACK_COMPONENTS=(kafka schema-registry elasticsearch clickhouse postgres connect jaeger k6 promtool)

log()  { printf '[stack] %s\n' "$*" >&2; }
fail() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

fn_name() { printf '%s' "${1//-/_}"; }
dist_dir() { printf '%s/%s' "$STACK_DIST_DIR" "$1"; }
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
# NAME is a node's name (see node_name); the component makes its own data dir.
start_daemon() {
  local name="$1"; shift
  mkdir -p "$STACK_DIR/logs" "$STACK_DIR/run"
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

# stop_daemon NAME [SIGNAL]: SIGNAL (default TERM) to the process group started by
# start_daemon, KILL after a grace period. A component whose server wants another
# signal for a clean stop sets <NAME>_STOP_SIGNAL (see stop_signal).
stop_daemon() {
  local name="$1" sig="${2:-TERM}" pid
  if ! pid="$(running_pid "$name")"; then
    rm -f "$(pid_file "$name")"
    return 0
  fi
  log "stopping $name (pid $pid)"
  kill "-$sig" -- "-$pid" 2>/dev/null || kill "-$sig" "$pid" 2>/dev/null || true
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

# stop_signal COMPONENT: the signal that stops it cleanly, $<NAME>_STOP_SIGNAL or TERM
# (PostgreSQL: INT, a fast shutdown; TERM would wait for every client to disconnect).
stop_signal() {
  local var; var="$(fn_name "$1" | tr '[:lower:]' '[:upper:]')_STOP_SIGNAL"
  printf '%s' "${!var:-TERM}"
}

# wait_healthy COMPONENT NODE TIMEOUT: poll the node's health check; fail naming the
# node and its log when the process dies or the time runs out.
wait_healthy() {
  local c="$1" node="$2" timeout="$3" fn name; fn="$(fn_name "$c")"; name="$(node_name "$c" "$node")"
  local deadline=$((SECONDS + timeout))
  while (( SECONDS < deadline )); do
    if "${fn}_health" "$node" >/dev/null 2>&1; then return 0; fi
    if ! running_pid "$name" >/dev/null; then
      tail -n 30 "$(log_file "$name")" >&2 || true
      fail "$name exited during start-up; see $(log_file "$name")"
    fi
    sleep 1
  done
  tail -n 30 "$(log_file "$name")" >&2 || true
  fail "$name was not healthy within ${timeout}s; see $(log_file "$name")"
}

# wait_ready COMPONENT TIMEOUT NODE...: poll <component>_ready (the cluster has formed) while
# the given nodes keep running; its output says what is missing.
wait_ready() {
  local c="$1" timeout="$2"; shift 2
  local fn node out=""; fn="$(fn_name "$c")"
  local deadline=$((SECONDS + timeout))
  while (( SECONDS < deadline )); do
    if out="$("${fn}_ready" 2>&1)"; then return 0; fi
    for node in "$@"; do
      running_pid "$(node_name "$c" "$node")" >/dev/null \
        || fail "$(node_name "$c" "$node") exited while $c was forming; see $(log_file "$(node_name "$c" "$node")")"
    done
    sleep 1
  done
  fail "$c did not form within ${timeout}s: ${out:-no answer}"
}

# ---- Clusters ---------------------------------------------------------------------
# A component that can run several nodes defines <name>_nodes (how many the selected
# variant runs, usually through stack_node_count), and its _start and _health take the
# node number 1..n. Node 1 keeps the component's own name, so a 1-node stack is exactly
# what it always was (run/kafka.pid, logs/kafka.log); node i>=2 is "<name>-<i>"
# (run/kafka-2.pid, logs/kafka-2.log). On the command line "kafka" means every node of
# the component and "kafka-2" node 2 alone. It may define <name>_ready: once the nodes
# that start was asked for are healthy, start waits until it succeeds (e.g. every node
# has joined). start records the node count in run/<name>.nodes while nodes run.

node_name() { if (( $2 == 1 )); then printf '%s' "$1"; else printf '%s-%s' "$1" "$2"; fi; }

# parse_target ARG: sets TARGET (the component) and TARGET_NODE (a node number, or
# empty for every node): "kafka-2" is node 2 of kafka, "schema-registry" a component.
parse_target() {
  TARGET="$1"; TARGET_NODE=""
  if [[ "$1" =~ ^(.+)-([0-9]+)$ && -f "$STACK_SCRIPTS/components/${BASH_REMATCH[1]}.sh" ]]; then
    TARGET="${BASH_REMATCH[1]}"; TARGET_NODE="$((10#${BASH_REMATCH[2]}))"
    (( TARGET_NODE >= 1 )) || fail "$1: nodes are numbered from 1"
  fi
}

# node_count COMPONENT: how many nodes the selected variant runs (1 without <name>_nodes).
node_count() {
  local fn; fn="$(fn_name "$1")"
  if declare -F "${fn}_nodes" >/dev/null; then "${fn}_nodes"; else printf 1; fi
}

# pid_nodes COMPONENT: the node numbers that have a pid file, whatever the variant.
pid_nodes() {
  local c="$1" f n
  if [[ -f "$(pid_file "$c")" ]]; then echo 1; fi
  for f in "$STACK_DIR/run/$c"-*.pid; do
    [[ -f "$f" ]] || continue
    n="${f##*/"$c"-}"; n="${n%.pid}"
    if [[ "$n" =~ ^[0-9]+$ ]]; then echo "$((10#$n))"; fi
  done
}

# running_variant COMPONENT: the node count that the running nodes were started with;
# fails when no node of the component runs.
running_variant() {
  local c="$1" n
  for n in $(pid_nodes "$c"); do
    if running_pid "$(node_name "$c" "$n")" >/dev/null; then
      cat "$STACK_DIR/run/$c.nodes" 2>/dev/null || printf 1
      return 0
    fi
  done
  return 1
}

# stack_node_count COMPONENT VAR: the node count: $VAR when set (1 to 9); else, while a
# node of the component runs, the count it was started with; else 1.
stack_node_count() {
  local c="$1" var="$2" v="${!2:-}"
  if [[ -n "$v" ]]; then
    [[ "$v" =~ ^[1-9]$ ]] || fail "$var must be a number from 1 to 9 (got '$v')"
    printf '%s' "$v"; return 0
  fi
  running_variant "$c" || printf 1
}

# go_build_tool NAME PACKAGE VERSION DIST: builds the Go program PACKAGE (a
# module's cmd/...) at VERSION from the Go module proxy into DIST/NAME, with
# the Go on PATH or /usr/local/go. In a throwaway module of its own:
# `go install pkg@version` refuses a module whose go.mod has replace
# directives, `go get -tool` inside another module does not.
go_build_tool() {
  local name="$1" pkg="$2" version="$3" dist="$4"
  local go; go="$(command -v go || true)"
  [[ -n "$go" ]] || go=/usr/local/go/bin/go
  [[ -x "$go" ]] || fail "$name: Go is needed to build $pkg@$version (install it, or put go on PATH)"
  local build="$STACK_DIR/build/$name"
  rm -rf "$build" && mkdir -p "$build" "$dist"
  (
    cd "$build"
    export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
    "$go" mod init "stack.local/$name" >/dev/null 2>&1
    "$go" get -tool "$pkg@$version" >&2
    "$go" build -trimpath -ldflags='-s -w' -o "$dist/$name" "$pkg" >&2
  ) || fail "$name: building $pkg@$version failed ($("$go" version))"
  rm -rf "$build"
}

http_ok() { curl -fsS --max-time 3 -o /dev/null "$1"; }

# Fetch one artifact (with its dependencies when asked) from Maven Central into DIR.
# maven_copy_deps POM_DIR OUT_DIR [MVN_ARGS...]: resolve the dependencies of a small pom
# we ship; MVN_ARGS e.g. "-P profile" select a profile of it.
maven_copy_deps() {
  local pom_dir="$1" out="$2"; shift 2
  mkdir -p "$out"
  mvn -B -q -Dstyle.color=never -f "$pom_dir/pom.xml" "$@" \
    org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
    -DoutputDirectory="$out" -DincludeScope=runtime >&2
}

# The stack's throwaway certificates: STACK_TLS_DIR, tls_ensure.
# shellcheck source=tls.sh
source "$STACK_SCRIPTS/tls.sh"
