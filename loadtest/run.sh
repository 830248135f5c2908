#!/usr/bin/env bash
# `make loadtest`: the load-test scenarios against the local stack after
# seeding, ending in one summary table.
#
#   ORDERS=20000 RATE=5000 DURATION=20s make loadtest
#
# Main knobs (defaults in brackets):
#   ORDERS    [100000] orders seeded into topics, index and database of the run's
#                      own ("load"); seeded once per value, then reused (.stack/loadtest)
#   RATE      [10000]  requests/s of the hot-lookup scenario
#   DURATION  [30s]    length of each measured scenario (warm-ups come on top)
# Per scenario:
#   CRM_RATE [1000]                    CRM mix, requests/s
#   CACHED_RATE [500], UNCACHED_RATE [5]  analytics, requests/s
#   COLD_IDS [5], COLD_ROUNDS [5], COLD_FANOUT [200]  cold-miss storm: ids evicted per
#                                      round, rounds/s, lookups sent at once per round
#   STORM_CLIENTS [200], STORM_TIER_RATE [5], STORM_RATE [4000], GOOD_RATE [50]
#                                      rate-limit storm: keys, their tier's rate (burst
#                                      twice that), the storm's total requests/s, and
#                                      the well-behaved client's requests/s
#   FRESHNESS_N [200], FRESHNESS_MODE [poll]  freshness updates, and how they are
#                                      awaited (benches/freshness.rs)
#   LOADTEST_PORT [18090] (the rate-limit storm's gateway uses the next port),
#   CACHE_BYTES [1 GiB]
#   STACK_DIR  the native stack's directory (scripts/stack/lib.sh): another
#              checkout's .stack uses the stack that checkout runs
#
# Scenarios, each at a constant arrival rate (open model: latency is not
# hidden by coordinated omission) and with thresholds:
#   1 hot lookups      loadtest/hot-lookups.js       Zipf-skewed ids, cache hits
#   2 CRM mix          loadtest/crm-mix.js           80 % by id, 15 % customer's orders, 5 % search
#   3 analytics        loadtest/analytics.js         a cached KPI answer, and new KPI queries
#   4 cold-miss storm  loadtest/cold-miss-storm.js   evict a few ids, many lookups at once:
#                                                    backend reads and coalesced waits from /metrics
#   5 freshness        benches/freshness.rs          produce an order update, poll until visible
#   6 rate-limit storm loadtest/rate-limit-storm.js  STORM_CLIENTS keys over their tier, and a
#                                                    well-behaved client; on a gateway of its own
#                                                    (every request compares its key with every
#                                                    configured key: 200 extra keys would tax 1-5)
# A missed threshold is reported at once and in the table; the table is
# always printed, and the exit status is 1 when anything was missed.
set -euo pipefail
cd "$(dirname "$0")/.."
orders="${ORDERS:-100000}"; rate="${RATE:-10000}"; duration="${DURATION:-30s}"
port="${LOADTEST_PORT:-18090}"; storm_port=$((port + 1))
storm_clients="${STORM_CLIENTS:-200}"; storm_tier_rate="${STORM_TIER_RATE:-5}"
scripts/stack/start
eval "$(scripts/stack/env)"
cargo build --locked --release --bin order-gateway >&2
# The freshness driver, built before anything is seeded so a build error stops the run early.
cargo bench --locked --bench freshness --no-run >&2
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
rm -rf "$work/summary"; mkdir -p "$work/summary"

# Inputs of the scenarios, from the seed's truth file:
#   ids.json        every order id (hot lookups, CRM by id); Zipf rank = position
#   warm-ids.json   the 2,000 most popular, warmed on the rate-limit storm's gateway
#   storm-ids.json  orders in Elasticsearch's hot window, away from the popular head (cold-miss storm)
#   fresh-ids.json  others in the hot window, for the freshness updates
#   crm.json        customer ids, and SKUs, cities and order numbers to search for
python3 - "$work" "$work/truth-$orders.jsonl" <<'PY'
import json, random, sys, time
work, truth = sys.argv[1], sys.argv[2]
views = [json.loads(l) for l in open(truth)]
ids = [v["order_id"] for v in views]
json.dump(ids, open(f"{work}/ids.json", "w"))
json.dump(ids[:2000], open(f"{work}/warm-ids.json", "w"))
# Elasticsearch keeps orders created within ingest.hot_window (730 days); leave a margin.
cutoff = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 700 * 86400))
hot = [v["order_id"] for v in views[len(views) // 10:] if v.get("order") and v["order"]["created_at"] > cutoff]
json.dump(hot[:50], open(f"{work}/storm-ids.json", "w"))
json.dump(hot[-1000:], open(f"{work}/fresh-ids.json", "w"))
rnd = random.Random(7)
orders = [v["order"] for v in views if v.get("order")]
skus = sorted({l["sku"] for o in orders for l in o.get("lines", [])})
cities = sorted({o["shipping_address"]["city"] for o in orders if o.get("shipping_address")})
numbers = [o["order_number"] for o in rnd.sample(orders, min(300, len(orders)))]
terms = rnd.sample(skus, min(300, len(skus))) + cities[:300] + numbers
json.dump({"customers": sorted({o["customer_id"] for o in orders}), "terms": terms}, open(f"{work}/crm.json", "w"))
PY

# The run's key, in the unlimited tier and with every scope: the scenarios
# measure the gateway's work (authentication included), not its rate limits.
api_key="ogw_loadtest_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
run_key="{name=\"loadtest\",hash=\"$("$bin" hash-key "$api_key")\",scopes=[\"orders:read\",\"orders:pii\",\"analytics:read\",\"admin\"],tier=\"unlimited\"}"

gw=""
trap '[[ -n "$gw" ]] && kill "$gw" 2>/dev/null || true' EXIT
# start_gateway PORT LOG: the release gateway in the background (pid in $gw),
# with the environment as it stands; a cache large enough for every seeded order.
start_gateway() {
  # The gateway logs at the shipped level (info, access lines sampled); the
  # tools above stay at warn.
  ORDER_GATEWAY__CACHE__MAX_BYTES="${CACHE_BYTES:-1073741824}" ORDER_GATEWAY__SERVER__LISTEN="127.0.0.1:$1" \
    ORDER_GATEWAY__LOG__LEVEL=info "$bin" serve >"$2" 2>&1 &
  gw=$!
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$1/healthz" >/dev/null && return 0; sleep 0.1; done
  echo "[loadtest] the gateway on port $1 did not start; see $2" >&2; exit 1
}
stop_gateway() {
  kill "$gw" 2>/dev/null || true; wait "$gw" 2>/dev/null || true; gw=""
}
# warm PORT IDS_FILE: fill the cache through batchGet (one backend round trip
# per 100 ids): the lookup scenarios measure hits; misses are the storm's subject.
warm() {
  python3 - "$1" "$2" "$api_key" <<'PY'
import json, sys, urllib.request
port, path, key = sys.argv[1], sys.argv[2], sys.argv[3]
ids = json.load(open(path))
for i in range(0, len(ids), 100):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/orders:batchGet",
        data=json.dumps({"ids": ids[i:i+100]}).encode(), headers={"content-type": "application/json", "authorization": f"Bearer {key}"})
    urllib.request.urlopen(req, timeout=30).read()
PY
}
# scenario NAME CMD...: runs one scenario; a non-zero exit (a missed threshold,
# or a failure) is noted and the run goes on.
scenario() {
  local name="$1" rc=0; shift
  echo "[loadtest] --- $name" >&2
  "$@" || rc=$?
  echo "$name $rc" >>"$work/summary/status"
  (( rc == 0 )) || echo "[loadtest] $name: exit status $rc (a threshold was missed, or the run failed; see the table)" >&2
}
k6() {
  "$K6_BIN" run --quiet -e BASE_URL="http://127.0.0.1:$port" -e API_KEY="$api_key" -e DURATION="$duration" \
    -e SUMMARY_DIR="$PWD/$work/summary" "$@"
}

export ORDER_GATEWAY__AUTH__KEYS="[$run_key]"
start_gateway "$port" "$work/gateway.log"
warm "$port" "$work/ids.json"
echo "[loadtest] gateway pid $gw on 127.0.0.1:$port; $orders orders; $(nproc) cores shared with k6 and the stack" >&2

scenario hot-lookups k6 -e IDS="$PWD/$work/ids.json" -e RATE="$rate" loadtest/hot-lookups.js
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
scenario crm-mix k6 -e IDS="$PWD/$work/ids.json" -e CRM="$PWD/$work/crm.json" -e CRM_RATE="${CRM_RATE:-1000}" loadtest/crm-mix.js
scenario analytics k6 -e CACHED_RATE="${CACHED_RATE:-500}" -e UNCACHED_RATE="${UNCACHED_RATE:-5}" loadtest/analytics.js
scenario cold-miss-storm k6 -e IDS="$PWD/$work/storm-ids.json" -e COLD_IDS="${COLD_IDS:-5}" \
  -e COLD_ROUNDS="${COLD_ROUNDS:-5}" -e COLD_FANOUT="${COLD_FANOUT:-200}" loadtest/cold-miss-storm.js
scenario freshness env FRESHNESS_BASE_URL="http://127.0.0.1:$port" FRESHNESS_API_KEY="$api_key" \
  FRESHNESS_IDS="$work/fresh-ids.json" FRESHNESS_N="${FRESHNESS_N:-200}" FRESHNESS_MODE="${FRESHNESS_MODE:-poll}" \
  FRESHNESS_OUT="$work/summary/5-freshness.json" cargo bench --locked --bench freshness
echo "[loadtest] gateway resident memory: $(ps -o rss= -p "$gw" | awk '{printf "%.0f MiB", $1/1024}')" >&2
stop_gateway

# The rate-limit storm: STORM_CLIENTS keys in a small tier "storm", and a
# well-behaved key in the standard tier, on a gateway of their own.
good_key="ogw_good_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
ORDER_GATEWAY__AUTH__KEYS="$(python3 - "$storm_clients" "$work/storm-keys.json" "$run_key" "$good_key" <<'PY'
import hashlib, json, secrets, sys
n, path, run_key, good = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
keys = [f"ogw_storm_{i:04d}_{secrets.token_hex(8)}" for i in range(n)]
json.dump(keys, open(path, "w"))
h = lambda k: "sha256:" + hashlib.sha256(k.encode()).hexdigest()  # as `order-gateway hash-key`
entries = [run_key, f'{{name="good",hash="{h(good)}",scopes=["orders:read"],tier="standard"}}']
entries += [f'{{name="storm-{i:04d}",hash="{h(k)}",scopes=["orders:read"],tier="storm"}}' for i, k in enumerate(keys)]
print("[" + ",".join(entries) + "]")
PY
)"
export ORDER_GATEWAY__AUTH__KEYS ORDER_GATEWAY__RATE_LIMIT__TIERS__STORM__RATE="$storm_tier_rate" \
  ORDER_GATEWAY__RATE_LIMIT__TIERS__STORM__BURST=$((storm_tier_rate * 2))
start_gateway "$storm_port" "$work/gateway-storm.log"
warm "$storm_port" "$work/warm-ids.json"
scenario rate-limit-storm k6 -e BASE_URL="http://127.0.0.1:$storm_port" -e IDS="$PWD/$work/warm-ids.json" \
  -e STORM_KEYS="$PWD/$work/storm-keys.json" -e GOOD_KEY="$good_key" \
  -e STORM_RATE="${STORM_RATE:-4000}" -e STORM_TIER_RATE="$storm_tier_rate" -e GOOD_RATE="${GOOD_RATE:-50}" loadtest/rate-limit-storm.js
stop_gateway

python3 loadtest/summary.py "$work"
