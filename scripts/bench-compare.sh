#!/usr/bin/env bash
# `make bench-compare`: the same lookup scenario, in one run on this machine,
# against the gateway (cache hits, production settings), Varnish in front of
# Elasticsearch, Elasticsearch itself, nginx serving the same JSON as static
# files, and a bare hyper server answering the same bytes from moka (the floor).
#
#   ORDERS=10000 STEP_SECONDS=4 FIXED_RATE=5000 FIXED_SECONDS=10 PIN=1 scripts/bench-compare.sh
#
# For each target it prints (a) the highest offered rate it sustains with p99
# under P99_LIMIT_MS (5 ms), no errors and at least 95 % of the offered rate
# achieved: the rate starts at START_RATE (5,000/s) and doubles every
# STEP_SECONDS until a step misses, then BISECT_STEPS (3) steps bisect between
# the last rate held and the first missed; and (b) p50/p99/p99.9 at FIXED_RATE
# (5,000/s) for FIXED_SECONDS. Both use oha (crates.io) in its open model:
# `-q RATE --latency-correction`, CONNECTIONS (100) connections, latency
# counted from when each request was due, so a stalled server is not hidden
# by coordinated omission. oha drives about 80,000 req/s from one core here;
# k6 saturates far below that and wrk (closed model) cannot hold a rate. Last,
# (c) the capacity: wrk (Debian), one thread, CAPACITY_CONNECTIONS (64)
# connections asking as fast as the target answers, for STEP_SECONDS; wrk
# costs its core about half what oha does per request, so this shows what a
# server can do once the generator is not the limit, and its CPU per request.
# Every target gets the same URL list: SEQUENCE_LENGTH ids drawn uniformly
# from the seeded orders with a fixed seed; oha picks from it at random.
#
# Orders are seeded once into topics, an Elasticsearch alias and a ClickHouse
# database of their own, named cmp<ORDERS> (cmp10000), through the project's
# tools as loadtest/run.sh does (setup, seed --truth, ingest); a later run on
# the same stack, from any checkout, finds them in Elasticsearch and reuses
# them. The targets are asked for the orders the alias holds (the hot ones).
#
# All five servers are started first and measured in turns (each phase, and
# each round of the search, goes through every target), so that load from
# outside the run falls on all of them alike.
#
# The load generator and the servers share this machine's cores. With PIN=1
# (the default) each server runs on SERVER_CPUS (0) and the generator on
# GENERATOR_CPUS (1), with taskset; Elasticsearch, which the stack started, is
# moved onto SERVER_CPUS for each of its own runs and given its affinity back
# after each. PIN=0 lets the scheduler place everything.
#
# ONLY="gateway base" (names from gateway, base, varnish, elasticsearch, nginx,
# bare; default all) measures only those targets: a before/after comparison of
# the gateway alone skips the peers, their set-up and the bare server's build.
#
# BASE=<git revision> adds a sixth target, "gateway@<rev>": the gateway built
# from that revision (in a worktree, with its own target directory under
# target/bench-base, kept for the next run) with the same settings, so a
# change is measured against what it replaced in one run, as ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

orders="${ORDERS:-10000}"
export STEP_SECONDS="${STEP_SECONDS:-4}" FIXED_RATE="${FIXED_RATE:-5000}" FIXED_SECONDS="${FIXED_SECONDS:-10}"
export P99_LIMIT_MS="${P99_LIMIT_MS:-5}" WARMUP_SECONDS="${WARMUP_SECONDS:-2}"
sequence_length="${SEQUENCE_LENGTH:-100000}"
pin="${PIN:-1}"
gateway_port="${GATEWAY_PORT:-18290}" bare_port="${BARE_PORT:-18291}" nginx_port="${NGINX_PORT:-18292}"
varnish_port="${VARNISH_PORT:-18293}"
prefix="cmp$orders"
work="$root/.stack/bench-compare"; mkdir -p "$work"
helper=(python3 "$root/scripts/bench-compare.py")
say() { printf '[bench-compare] %s\n' "$*" >&2; }
only="${ONLY:-gateway base varnish elasticsearch nginx bare}"
wanted() { [[ " $only " == *" $1 "* ]]; }

# --- tools: Debian packages (as scripts/prereqs.sh does), oha from crates.io
export PATH="$PATH:/usr/sbin:/sbin"   # varnishd and nginx live in sbin
missing=()
for pair in varnishd:varnish nginx:nginx wrk:wrk taskset:util-linux ss:iproute2 curl:curl python3:python3; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if (( ${#missing[@]} )); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    say "installing: ${missing[*]}"
    # Debian starts a package's service on install: keep nginx and varnish from
    # taking ports 80 and 6081 system-wide when nothing prevents that already.
    policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      policy=/usr/sbin/policy-rc.d; printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    if [[ -n "$policy" ]]; then rm -f "$policy"; fi
  else
    say "missing tools; install these Debian packages: ${missing[*]}"; exit 1
  fi
fi
oha_version=1.16.0
OHA_BIN="$(command -v oha || echo "${CARGO_HOME:-$HOME/.cargo}/bin/oha")"
if [[ "$("$OHA_BIN" --version 2>/dev/null)" != *"$oha_version"* ]]; then
  say "installing oha $oha_version from crates.io with cargo install (first run only; several minutes on 2 cores)"
  cargo install --locked --quiet "oha@$oha_version" >&2
  OHA_BIN="${CARGO_HOME:-$HOME/.cargo}/bin/oha"
fi
export OHA_BIN

# --- the stack, the binaries
scripts/stack/start
eval "$(scripts/stack/env)"
cargo build --locked --release --bin order-gateway >&2
bin=target/release/order-gateway
bare_bin=""
if wanted bare; then
bare_bin="$(cargo bench --locked --bench bare_server --no-run --message-format=json \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "bare_server" and m.get("executable"):
        print(m["executable"])')" || true
[[ -x "$bare_bin" ]] || { say "could not build benches/bare_server.rs (cargo bench --bench bare_server --no-run)"; exit 1; }
fi
base_rev="${BASE:-}" base_bin=""
if ! wanted base; then base_rev=""; fi
if [[ -n "$base_rev" ]]; then
  base_sha="$(git rev-parse --verify --quiet "$base_rev^{commit}")" || { say "BASE=$base_rev is not a revision of this repository"; exit 2; }
  base_tree="$root/target/bench-base/src-$base_sha"
  if [[ ! -d "$base_tree" ]]; then
    git worktree add --detach --force "$base_tree" "$base_sha" >&2
  fi
  say "building the gateway at $base_rev ($base_sha) for comparison"
  (cd "$base_tree" && CARGO_TARGET_DIR="$root/target/bench-base/target" cargo build --locked --release --bin order-gateway >&2)
  base_bin="$root/target/bench-base/target/release/order-gateway"
fi

export ORDER_GATEWAY__TOPICS__ORDERS=$prefix.orders ORDER_GATEWAY__TOPICS__FULFILLMENTS=$prefix.fulfillments \
  ORDER_GATEWAY__TOPICS__DEAD_LETTER=$prefix.dlq ORDER_GATEWAY__TOPICS__CDC="" \
  ORDER_GATEWAY__ELASTICSEARCH__READ_ALIAS=$prefix ORDER_GATEWAY__ELASTICSEARCH__WRITE_ALIAS=$prefix-write \
  ORDER_GATEWAY__CLICKHOUSE__DATABASE=$prefix ORDER_GATEWAY__INGEST__GROUP_ID=$prefix-ingest \
  ORDER_GATEWAY__LOG__FORMAT=text ORDER_GATEWAY__LOG__LEVEL=warn
es_url="$ORDER_GATEWAY__ELASTICSEARCH__URL"
es_port="${es_url##*:}"

# --- everything this run starts is stopped on exit
tmp="$(mktemp -d /tmp/bench-compare.XXXXXX)"
chmod 755 "$tmp"   # nginx's and varnish's unprivileged workers read their files here
pids=()
es_pid="" es_affinity="" varnish_shm="" helper_pid=""
cleanup() {
  local rc=$?
  if [[ -n "$helper_pid" ]]; then kill "$helper_pid" 2>/dev/null || true; wait "$helper_pid" 2>/dev/null || true; fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  if [[ -n "$es_affinity" ]]; then taskset -a -c -p "$es_affinity" "$es_pid" >/dev/null 2>&1 || true; fi
  rm -rf "$tmp"
  if [[ -n "$varnish_shm" ]]; then rm -rf "$varnish_shm"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
stop() {  # stop PID: TERM, wait, KILL
  kill "$1" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
}
for port in "$gateway_port" "$varnish_port" "$nginx_port" "$bare_port"; do
  if [[ -n "$(ss -Hltn "sport = :$port")" ]]; then
    say "port $port is taken (ss -ltnp 'sport = :$port'); set GATEWAY_PORT, VARNISH_PORT, NGINX_PORT or BARE_PORT"; exit 1
  fi
done
wait_http() {  # wait_http URL NAME PID
  for _ in $(seq 1 150); do
    curl -fs -o /dev/null "$1" && return 0
    kill -0 "$3" 2>/dev/null || { say "$2 exited during start-up"; return 1; }
    sleep 0.1
  done
  say "$2 did not answer $1 within 15 s"; return 1
}

if [[ "$pin" == 1 ]]; then
  server_cpus="${SERVER_CPUS:-0}"; export GENERATOR_CPUS="${GENERATOR_CPUS:-1}"
  SERVER_CPU_COUNT="$(taskset -c "$server_cpus" nproc)"; export SERVER_CPU_COUNT
  on_server=(taskset -c "$server_cpus")
  placement="server on CPU $server_cpus, load generator on CPU $GENERATOR_CPUS (taskset); the rest of the stack unpinned"
else
  server_cpus=""; export GENERATOR_CPUS=""
  on_server=()
  placement="no pinning: servers, load generator and the rest of the stack share every core"
  SERVER_CPU_COUNT="$(nproc)"; export SERVER_CPU_COUNT
fi

# --- data: seed once (setup, seed --truth, ingest) into the cmp<ORDERS> topics, alias and database
truth="$work/truth-$prefix.jsonl"
es_count="$(curl -fs "$es_url/$prefix/_count" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])' 2>/dev/null || echo 0)"
if [[ "$es_count" == 0 ]]; then
  say "seeding $orders orders into topics $prefix.*, alias $prefix, database $prefix"
  "$bin" setup >/dev/null
  "$bin" seed --orders "$orders" --seed 7 --truth "$truth.tmp" >&2
  "$bin" ingest --exit-when-idle 5s >/dev/null 2>&1
  mv "$truth.tmp" "$truth"
fi
# Fresh inserts leave ClickHouse merging parts for a while; measure after that.
for _ in $(seq 1 120); do
  [[ "$(curl -fs "${ORDER_GATEWAY__CLICKHOUSE__URL}/" --data 'SELECT count() FROM system.merges')" == "0" ]] && break
  sleep 1
done
"${helper[@]}" ids "$es_url" "$prefix" "$tmp/ids.json" "$tmp/sequence.txt" "$sequence_length" 7

# --- 1. the gateway: release build, the shipped defaults (the log included:
# info, JSON, one access line in log.access_sample), a key of its own in a tier
# too high to refuse
api_key="ogw_bench_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
cat >"$tmp/gateway.toml" <<EOF
[server]
listen = "127.0.0.1:$gateway_port"
[cache]
# Every seeded order fits: the scenario is about hits.
max_bytes = 1073741824
[[auth.keys]]
name = "bench-compare"
hash = "$("$bin" hash-key "$api_key")"
scopes = ["orders:read", "orders:pii"]
tier = "bench"
# A real bucket (not rate = 0, which skips the limiter) the size of the
# premium tier's, refilled too fast to ever empty here (10 ms of it at once).
[rate_limit.tiers.bench]
rate = 1000000
burst = 10000
EOF
targets="$tmp/targets.tsv"; : >"$targets"
target() {  # target NAME BASE_URL PATH_PREFIX KEY PIDS REPIN: one line of the run's targets
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$targets"
}

"${on_server[@]}" "$bin" --config "$tmp/gateway.toml" serve >"$tmp/gateway.log" 2>&1 &
gw=$!; pids+=("$gw")
wait_http "http://127.0.0.1:$gateway_port/healthz" gateway "$gw" || { tail -20 "$tmp/gateway.log" >&2; exit 1; }
"${helper[@]}" warm-gateway "$gateway_port" "$api_key" "$tmp/ids.json"
"${helper[@]}" dump "$gateway_port" "$api_key" "$tmp/ids.json" "$tmp/www" "$tmp/orders.tsv"
n_ids="$(python3 -c "import json; print(len(json.load(open('$tmp/ids.json'))))")"
target gateway "http://127.0.0.1:$gateway_port" /v1/orders/ "$api_key" "$gw" 0

if [[ -n "$base_bin" ]]; then
  base_port="${BASE_PORT:-18294}"
  ORDER_GATEWAY__SERVER__LISTEN="127.0.0.1:$base_port" "${on_server[@]}" "$base_bin" --config "$tmp/gateway.toml" serve \
    >"$tmp/gateway-base.log" 2>&1 &
  gwb=$!; pids+=("$gwb")
  wait_http "http://127.0.0.1:$base_port/healthz" "gateway@$base_rev" "$gwb" || { tail -20 "$tmp/gateway-base.log" >&2; exit 1; }
  "${helper[@]}" warm-gateway "$base_port" "$api_key" "$tmp/ids.json"
  target "gateway@$base_rev" "http://127.0.0.1:$base_port" /v1/orders/ "$api_key" "$gwb" 0
fi

# --- 2. Varnish in front of Elasticsearch, warmed with every id
if wanted varnish; then
mkdir -p "$tmp/varnish"
cat >"$tmp/varnish/default.vcl" <<EOF
vcl 4.1;
backend es { .host = "127.0.0.1"; .port = "$es_port"; }
sub vcl_recv {
  # One uncompressed variant, as every other target serves (with
  # http_gzip_support off, Varnish neither asks for gzip nor gunzips).
  unset req.http.Accept-Encoding;
}
sub vcl_backend_response {
  # Long enough for the run: every lookup after the warm-up is a hit.
  set beresp.ttl = 1h;
}
EOF
# Its working directory (the shared-memory log, written on every request) on
# tmpfs, as Varnish recommends: on a disk, page writeback stalls it.
# varnishd makes the directory itself, for its unprivileged user.
varnish_work="$tmp/varnish/work"
if [[ -d /dev/shm ]]; then
  varnish_shm="$(mktemp -d /dev/shm/bench-compare-varnish.XXXXXX)"; chmod 755 "$varnish_shm"
  varnish_work="$varnish_shm/work"
fi
"${on_server[@]}" varnishd -F -n "$varnish_work" -a "127.0.0.1:$varnish_port" -f "$tmp/varnish/default.vcl" \
  -s malloc,256m -p http_gzip_support=off -T none >"$tmp/varnish.log" 2>&1 &
vn=$!; pids+=("$vn")
wait_http "http://127.0.0.1:$varnish_port/$prefix/_count" varnish "$vn" || { tail -20 "$tmp/varnish.log" >&2; exit 1; }
"${helper[@]}" warm "http://127.0.0.1:$varnish_port" "/$prefix/_source/" "$tmp/ids.json"
target varnish "http://127.0.0.1:$varnish_port" "/$prefix/_source/" "" "$vn" 0
fi

# --- 3. Elasticsearch GET directly: the stack's node, moved onto the server
# CPUs only while it is measured (the helper does that around each of its runs)
if wanted elasticsearch; then
es_pid="$(ss -Hltnp "sport = :$es_port" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 || true)"
if [[ -n "$es_pid" ]]; then es_affinity="$(taskset -c -p "$es_pid" | awk -F': ' '{print $2}')"; fi
target elasticsearch "$es_url" "/$prefix/_source/" "" "$es_pid" "$pin"
fi

# --- 4. nginx: the gateway's JSON as static files, one per order id
first_id="$(head -1 "$tmp/sequence.txt")"
if wanted nginx; then
mkdir -p "$tmp/nginx"
cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $tmp/nginx/client_body;
  proxy_temp_path $tmp/nginx/proxy;
  fastcgi_temp_path $tmp/nginx/fastcgi;
  uwsgi_temp_path $tmp/nginx/uwsgi;
  scgi_temp_path $tmp/nginx/scgi;
  sendfile on;
  tcp_nodelay on;
  keepalive_requests 10000000;
  open_file_cache max=100000 inactive=10m;
  types { }
  default_type application/json;
  server {
    listen 127.0.0.1:$nginx_port;
    root $tmp/www;
  }
}
EOF
chmod -R a+rX "$tmp/www"
"${on_server[@]}" nginx -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log" >"$tmp/nginx.log" 2>&1 &
ng=$!; pids+=("$ng")
wait_http "http://127.0.0.1:$nginx_port/v1/orders/$first_id" nginx "$ng" || { cat "$tmp/nginx/error.log" >&2; exit 1; }
target nginx "http://127.0.0.1:$nginx_port" /v1/orders/ "" "$ng" 0
fi

# --- 5. the bare hyper + moka server (benches/bare_server.rs): the floor
if wanted bare; then
BARE_SERVER_LISTEN="127.0.0.1:$bare_port" BARE_SERVER_DATA="$tmp/orders.tsv" "${on_server[@]}" "$bare_bin" >"$tmp/bare.log" 2>&1 &
bs=$!; pids+=("$bs")
wait_http "http://127.0.0.1:$bare_port/v1/orders/$first_id" bare "$bs" || { cat "$tmp/bare.log" >&2; exit 1; }
target bare "http://127.0.0.1:$bare_port" /v1/orders/ "" "$bs" 0
fi

# --- the measurements: every server is up (idle but for the one being
# measured) and the targets take turns, so outside load falls on all alike
say "$n_ids orders; $placement; $(nproc) cores in all"
export SERVER_CPUS="$server_cpus"
# In the background and waited for, so that a signal reaches the trap at once.
"${helper[@]}" run "$targets" "$tmp/sequence.txt" "$tmp" "$tmp/results.json" &
helper_pid=$!
wait "$helper_pid"
helper_pid=""
rss_gateway="$(ps -o rss= -p "$gw" | awk '{printf "%.0f MiB", $1/1024}')"
for p in "${pids[@]}"; do stop "$p"; done
pids=()

# --- the table
echo
echo "bench-compare $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'): GET one order by id, $n_ids orders, ids drawn uniformly (same list for every target)"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load average $(cut -d' ' -f1-3 /proc/loadavg); load generator and servers share it: $placement"
echo "(a) highest offered rate held with p99 < ${P99_LIMIT_MS} ms, no errors, >= 95 % achieved: oha -q, doubling from ${START_RATE:-5000}/s then bisecting, ${STEP_SECONDS} s a step"
echo "(b) ${FIXED_RATE}/s for ${FIXED_SECONDS} s. Both: oha $("$OHA_BIN" --version | awk '{print $2}'), open model with --latency-correction, ${CONNECTIONS:-100} connections, identity encoding"
echo "(c) capacity: wrk $(wrk -v 2>&1 | grep -o '[0-9][0-9.]*' | head -1), 1 thread, ${CAPACITY_CONNECTIONS:-64} connections, closed model, ${STEP_SECONDS} s: the most answered per second at any latency"
echo "server/oha/wrk cores: CPU used per second of wall time during that run; CPU us/req: the server's CPU per request in (c)"
echo "other cores: the rest of the machine meanwhile (other processes, and kernel time charged to no process)"
echo "limited by, at the first rate missed: 'server CPU' or 'generator CPU' when that side used >= 80 % of its CPUs, else 'other load' when"
echo "  other cores >= 0.5, else 'no CPU full' (the tail grew with no CPU saturated: scheduling, queueing)"
echo "ratios are to the gateway (/gw): above 1 is more requests, or slower; errors: in (b) and (c)"
echo
"${helper[@]}" table "$tmp/results.json"
echo
echo "gateway: release build, auth on (x-api-key, SHA-256 checked), rate limit on (GCRA bucket of 10,000 refilled at 1e6/s), metrics and ETags on, the shipped log settings (info, JSON, access lines sampled); RSS $rss_gateway"
echo "varnish $(varnishd -V 2>&1 | grep -o 'varnish-[0-9.]*' | head -1) (malloc 256 MB, TTL 1 h) caching Elasticsearch GET /$prefix/_source/{id}, warmed with every id"
echo "elasticsearch: GET /$prefix/_source/{id} (the same order view, keys sorted; same size as the gateway's body)"
echo "nginx $(nginx -v 2>&1 | grep -o '[0-9][0-9.]*'), worker_processes 2, access log off, open_file_cache, one file per order (the gateway's bytes)"
echo "bare: benches/bare_server.rs (hyper 1 http1, moka::sync::Cache, tokio multi-thread), the gateway's bytes"
if [[ -n "$base_bin" ]]; then echo "gateway@$base_rev: the gateway built from $base_sha, the same settings"; fi
