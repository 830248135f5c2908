#!/usr/bin/env bash
# Ingest throughput end to end on the local stack: seed ORDERS orders into
# fresh topics, then time `ingest --exit-when-idle` until it has written every
# event to Elasticsearch and ClickHouse and committed. Prints events/s.
#   ORDERS=20000 scripts/bench-ingest.sh
set -euo pipefail
cd "$(dirname "$0")/.."
orders="${ORDERS:-20000}"
scripts/stack/start kafka schema-registry elasticsearch clickhouse
eval "$(scripts/stack/env)"
cargo build --locked --release --bin order-gateway >&2
bin=target/release/order-gateway
id="bench$(date +%s)"
export ORDER_GATEWAY__TOPICS__ORDERS="$id.orders" ORDER_GATEWAY__TOPICS__FULFILLMENTS="$id.fulfillments" \
  ORDER_GATEWAY__TOPICS__DEAD_LETTER="$id.dlq" ORDER_GATEWAY__TOPICS__CDC="" \
  ORDER_GATEWAY__ELASTICSEARCH__READ_ALIAS="$id" ORDER_GATEWAY__ELASTICSEARCH__WRITE_ALIAS="$id-write" \
  ORDER_GATEWAY__CLICKHOUSE__DATABASE="$id" \
  ORDER_GATEWAY__INGEST__GROUP_ID="$id-ingest" ORDER_GATEWAY__LOG__FORMAT=text
"$bin" setup >/dev/null
echo "[bench] seeding $orders orders" >&2
"$bin" seed --orders "$orders" --seed 42 >&2
echo "[bench] ingesting" >&2
"$bin" ingest --exit-when-idle 5s 2>&1 | grep -E "ingest stopped" | tail -1
