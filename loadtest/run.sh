#!/usr/bin/env bash
# `make loadtest`: the k6 scenarios against the local stack after seeding.
#   ORDERS=20000 RATE=10000 DURATION=30s loadtest/run.sh
# Seeds ORDERS orders (default 100,000: the analytics figures are over that many) into topics of its own, ingests them, starts the release
# gateway (logs at warn: per-request access logs cost more than a cache hit),
# runs each scenario and prints one summary table.
set -euo pipefail
cd "$(dirname "$0")/.."
orders="${ORDERS:-100000}"; rate="${RATE:-10000}"; duration="${DURATION:-30s}"
port="${LOADTEST_PORT:-18090}"
scripts/stack/start
eval "$(scripts/stack/env)"
cargo build --locked --release --bin order-gateway >&2
bin=target/release/order-gateway
export ORDER_GATEWAY__TOPICS__ORDERS=load.orders ORDER_GATEWAY__TOPICS__FULFILLMENTS=load.fulfillments \
  ORDER_GATEWAY__TOPICS__DEAD_LETTER=load.dlq ORDER_GATEWAY__TOPICS__CDC="" \
  ORDER_GATEWAY__ELASTICSEARCH__READ_ALIAS=load ORDER_GATEWAY__ELASTICSEARCH__WRITE_ALIAS=load-write \
  ORDER_GATEWAY__CLICKHOUSE__DATABASE=load ORDER_GATEWAY__INGEST__GROUP_ID=load-ingest \
  ORDER_GATEWAY__LOG__FORMAT=text ORDER_GATEWAY__LOG__LEVEL=warn
work=.stack/loadtest; mkdir -p "$work"
if [[ ! -s "$work/truth-$orders.jsonl" ]]; then
  "$bin" setup >/dev/null
  "$bin" seed --orders "$orders" --seed 99 --truth "$work/truth-$orders.jsonl" >&2
  "$bin" ingest --exit-when-idle 5s >/dev/null 2>&1
fi
# Fresh inserts leave ClickHouse merging parts for a while; measure after that.
for _ in $(seq 1 120); do
  [[ "$(curl -fs "http://127.0.0.1:${CLICKHOUSE_HTTP_PORT:-8123}/" --data 'SELECT count() FROM system.merges')" == "0" ]] && break
  sleep 1
done
python3 -c "
import json,sys
ids=[json.loads(l)['order_id'] for l in open('$work/truth-$orders.jsonl')]
json.dump(ids, open('$work/ids.json','w'))"
# A key of its own for this run, in the unlimited tier: the scenarios measure
# the gateway's work (authentication included), not its rate limits.
api_key="ogw_loadtest_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export ORDER_GATEWAY__AUTH__KEYS="[{name=\"loadtest\",hash=\"$("$bin" hash-key "$api_key")\",scopes=[\"orders:read\",\"orders:pii\",\"analytics:read\",\"admin\"],tier=\"unlimited\"}]"
# A cache large enough for every seeded order: the hot scenario is about hits.
ORDER_GATEWAY__CACHE__MAX_BYTES="${CACHE_BYTES:-1073741824}" ORDER_GATEWAY__SERVER__LISTEN="127.0.0.1:$port" "$bin" serve >"$work/gateway.log" 2>&1 &
gw=$!
trap 'kill $gw 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
# Warm the cache through batchGet (one backend round trip per 100 ids): the
# scenario measures hits; cold misses are another scenario's subject.
python3 - "$port" "$work/ids.json" "$api_key" <<'PY'
import json, sys, urllib.request
port, path, key = sys.argv[1], sys.argv[2], sys.argv[3]
ids = json.load(open(path))
for i in range(0, len(ids), 100):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/orders:batchGet",
        data=json.dumps({"ids": ids[i:i+100]}).encode(), headers={"content-type": "application/json", "authorization": f"Bearer {key}"})
    urllib.request.urlopen(req, timeout=30).read()
PY
echo "[loadtest] gateway pid $gw on 127.0.0.1:$port; $orders orders; $(nproc) cores shared with k6" >&2
"$K6_BIN" run --quiet -e BASE_URL="http://127.0.0.1:$port" -e API_KEY="$api_key" -e IDS="$PWD/$work/ids.json" -e RATE="$rate" -e DURATION="$duration" \
  loadtest/hot-lookups.js || echo "[loadtest] hot-lookups: a threshold was missed (see the table)" >&2
# Server-side latency from the gateway's own histogram (request head to response
# head), to tell the gateway's time from the load generator's.
curl -fs "http://127.0.0.1:$port/metrics" >"$work/metrics.txt" || true
python3 - "$work/metrics.txt" <<'PY' || true
import re, sys
buckets = {}
for line in open(sys.argv[1]):
    m = re.match(r'http_request_duration_seconds_bucket\{route="/v1/orders/\{order_id\}",method="GET",le="([^"]+)"\} (\d+)', line)
    if m:
        buckets[float("inf") if m[1] == "+Inf" else float(m[1])] = int(m[2])
if buckets:
    total = buckets[float("inf")]
    def q(p):
        return next(le for le, n in sorted(buckets.items()) if n >= p * total)
    print(f"[loadtest] server-side GET /v1/orders/{{order_id}}: {total} requests, p50 <= {q(0.5)*1000:g} ms, p99 <= {q(0.99)*1000:g} ms, p99.9 <= {q(0.999)*1000:g} ms (histogram bucket bounds)", file=sys.stderr)
PY
"$K6_BIN" run --quiet -e BASE_URL="http://127.0.0.1:$port" -e API_KEY="$api_key" -e DURATION="$duration" loadtest/analytics.js \
  || echo "[loadtest] analytics: a threshold was missed (see the table)" >&2
echo "[loadtest] gateway resident memory: $(ps -o rss= -p $gw | awk '{printf "%.0f MiB", $1/1024}')" >&2
