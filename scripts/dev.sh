#!/usr/bin/env bash
# `make dev`, after the stack is up and the binary built: what a first run needs
# to show real answers, then the gateway as it runs in production.
#
#   1. `setup` (idempotent): topics, schemas, index and aliases, tables.
#   2. The first time only, a small deterministic demo data set through Kafka
#      (`seed`, DEV_ORDERS orders, default 3000), remembered under
#      $DEV_STATE_DIR (default .stack/dev) per set of topics.
#   3. `ingest` and `serve` side by side, as in production: events keep
#      flowing from Kafka into Elasticsearch, ClickHouse and the cache.
#   4. Once /readyz answers and the demo order is found, three curl commands
#      with real ids and the Swagger UI address.
# Ctrl-C (or SIGTERM) stops both; if either stops on its own, so does the other.
#
# BIN (default target/release/order-gateway), GATEWAY_LISTEN (127.0.0.1:8080),
# ORDER_GATEWAY_CONFIG (config/dev.toml), and any ORDER_GATEWAY__* variable.
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${BIN:-target/release/order-gateway}"
listen="${GATEWAY_LISTEN:-127.0.0.1:8080}"
state="${DEV_STATE_DIR:-.stack/dev}"
orders="${DEV_ORDERS:-3000}"
export ORDER_GATEWAY_CONFIG="${ORDER_GATEWAY_CONFIG:-config/dev.toml}"
export ORDER_GATEWAY__SERVER__LISTEN="$listen"
export ORDER_GATEWAY__LOG__FORMAT="${ORDER_GATEWAY__LOG__FORMAT:-text}"
# The published key of config/dev.toml (every scope; loopback only).
key="${DEV_API_KEY:-ogw_dev_local_stack_only_not_a_secret}"
eval "$(scripts/stack/env)"
# Every request traced to the stack's Jaeger (its UI below), unless set otherwise.
export ORDER_GATEWAY__TRACING__OTLP_ENDPOINT="${ORDER_GATEWAY__TRACING__OTLP_ENDPOINT-$STACK_OTLP_ENDPOINT}"
export ORDER_GATEWAY__TRACING__SAMPLE_RATIO="${ORDER_GATEWAY__TRACING__SAMPLE_RATIO:-1}"

say() { echo "[dev] $*" >&2; }
[[ -x "$bin" ]] || { say "no binary at $bin: run 'make release' (or set BIN)"; exit 1; }

say "setup (topics, schemas, index, tables; idempotent)"
"$bin" setup >&2

# One marker per set of topics: another ORDER_GATEWAY__TOPICS__ORDERS seeds anew.
topics="$("$bin" check-config 2>/dev/null | sed -n '/^\[topics\]/,/^\[/s/^orders = "\(.*\)"/\1/p' | head -n 1)"
mkdir -p "$state"
truth="$state/demo-${topics:-orders}.jsonl"
if [[ -s "$truth" ]]; then
  say "demo data already seeded ($truth); remove that file to seed again"
else
  say "seeding $orders demo orders (first run only)"
  "$bin" seed --orders "$orders" --seed 42 --truth "$truth.part" >&2
  mv "$truth.part" "$truth"
fi

# The legacy database's changes through Debezium (topics.cdc), unless CDC is
# off in the configuration or DEV_CONNECTOR=0. Rows written with
# scripts/stack/postgres/psql then show in the gateway within a second.
cdc="$("$bin" check-config 2>/dev/null | sed -n '/^\[topics\]/,/^\[/s/^cdc = "\(.*\)"/\1/p' | head -n 1)"
if [[ -n "$cdc" && "${DEV_CONNECTOR:-1}" != 0 ]]; then
  say "deploying the Debezium connector (connectors/legacy-orders.json; DEV_CONNECTOR=0 skips this)"
  scripts/connector.sh deploy >&2 || say "the connector did not start (make connector-status); the gateway runs without CDC"
fi

pids=()
stop() {
  trap - INT TERM EXIT
  if (( ${#pids[@]} )); then
    say "stopping"
    # A second signal to serve skips its shutdown delay: this is a terminal.
    kill -TERM "${pids[@]}" 2>/dev/null || true
    sleep 0.2
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap stop EXIT

"$bin" ingest &
pids+=($!)
"$bin" serve &
pids+=($!)

# The demo order to show: the newest order of the demo set (in the hot window,
# so Elasticsearch has it once ingest has caught up) and its customer.
read -r order_id customer_id < <(python3 - "$truth" <<'EOF'
import json, sys
best = None
for line in open(sys.argv[1]):
    v = json.loads(line)
    o = v.get("order") or {}
    if best is None or o.get("created_at", "") > best[0]:
        best = (o.get("created_at", ""), v["order_id"], o.get("customer_id", ""))
print(best[1], best[2])
EOF
)

base="http://$listen"
say "waiting for $base/readyz and for ingest to reach order $order_id"
deadline=$((SECONDS + ${DEV_READY_TIMEOUT:-180}))
until curl -fsS -o /dev/null "$base/readyz" 2>/dev/null \
   && curl -fsS -o /dev/null -H "x-api-key: $key" "$base/v1/orders/$order_id" 2>/dev/null; do
  for p in "${pids[@]}"; do
    kill -0 "$p" 2>/dev/null || { say "a process stopped before the gateway was ready (see above)"; exit 1; }
  done
  if (( SECONDS > deadline )); then say "not ready after ${DEV_READY_TIMEOUT:-180}s"; exit 1; fi
  sleep 1
done

from="$(date -u -d '3 years ago' +%Y-%m-%dT00:00:00Z)"
to="$(date -u -d 'tomorrow' +%Y-%m-%dT00:00:00Z)"
cat <<EOT

order-gateway is serving on $base (ingest beside it). Try:

  curl -H 'x-api-key: $key' $base/v1/orders/$order_id
  curl -H 'x-api-key: $key' '$base/v1/customers/$customer_id/orders?limit=5'
  curl -H 'x-api-key: $key' '$base/v1/analytics/kpis?from=$from&to=$to'

API documentation (Swagger UI): $base/docs
Traces of every request (Jaeger): $STACK_JAEGER_URL
Ctrl-C stops the gateway and ingest; the stack keeps running (make stack-down).

EOT

# Either process ending ends the other.
wait -n "${pids[@]}" || true
say "a process stopped; stopping the other"
exit 1
