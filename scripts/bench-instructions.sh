#!/usr/bin/env bash
# `make bench-instructions`: instructions per cache hit, counted by valgrind's
# callgrind, for the gateway's server (`benches/hit_server.rs`: production
# settings, the cache filled in process) and the bare hyper + moka server
# (`benches/bare_server.rs`), with the functions that spend them.
#
#   HIT_SERVER=<binary> BARE_SERVER=<binary> REQUESTS_SECONDS=10 TOP=25 scripts/bench-instructions.sh
#
# Why: on these shared 2-core machines a socket benchmark of one binary
# spreads by a third between runs, so a change worth a few percent of a hit
# cannot be seen in req/s. Instructions retired in user space per request are
# the same from run to run (to a few in a thousand) and follow user CPU time;
# they do not count the kernel's share (the loopback TCP path, about half of
# a hit's CPU here) nor cache misses. Under valgrind the CPU has no SHA or
# AVX-512 extensions, so SHA-256 (the API key check) runs in software and
# costs about 3,500 instructions that a real CPU spends far fewer cycles on;
# compare builds with each other, not with a wall clock.
#
# Each server is started under callgrind, warmed with a few requests, its
# counters zeroed, then driven by wrk (one thread, 16 connections,
# REQUESTS_SECONDS) over the same ids as `make bench-compare`'s CPU runs;
# the counters are dumped and divided by the requests wrk saw answered.
# HIT_SERVER and BARE_SERVER default to the bench builds in target/release
# (`cargo bench --bench hit_server --bench bare_server --no-run`, built here
# when missing); point HIT_SERVER at another revision's build to compare.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds="${REQUESTS_SECONDS:-10}"
top="${TOP:-25}"
port="${PORT:-18196}"
work="${WORK_DIR:-$root/target/bench-instructions}"
key=bench-key-0123456789abcdef
mkdir -p "$work"

for tool in valgrind callgrind_control wrk curl python3; do
  command -v "$tool" > /dev/null || {
    echo "bench-instructions: $tool is not installed (Debian: apt-get install valgrind wrk curl python3)" >&2
    exit 1
  }
done

newest() { ls -t target/release/deps/"$1"-* 2> /dev/null | grep -v '\.d$' | head -1 || true; }
if [[ -z "${HIT_SERVER:-}" || -z "${BARE_SERVER:-}" ]]; then
  if [[ -z "$(newest hit_server)" || -z "$(newest bare_server)" ]]; then
    cargo bench --locked --bench hit_server --bench bare_server --no-run
  fi
fi
hit_server="${HIT_SERVER:-$(newest hit_server)}"
bare_server="${BARE_SERVER:-$(newest bare_server)}"

# The orders both servers answer: the gateway's own dump of its cache.
if [[ ! -s "$work/orders.tsv" ]]; then
  HIT_SERVER_LISTEN="127.0.0.1:$port" HIT_SERVER_ORDERS=6666 HIT_SERVER_DUMP="$work/orders.tsv" \
    timeout 20 "$hit_server" > /dev/null 2>&1 || true
  [[ -s "$work/orders.tsv" ]] || { echo "bench-instructions: $hit_server wrote no orders" >&2; exit 1; }
fi
cut -f1 "$work/orders.tsv" > "$work/ids.txt"
first_id=$(head -1 "$work/ids.txt")

pid=
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2> /dev/null || true; }
trap cleanup EXIT

# measure NAME BINARY VAR=VALUE...: prints instructions per request and the top functions.
measure() {
  local name=$1 binary=$2
  shift 2
  local out="$work/callgrind.$name"
  rm -f "$out" "$out".*
  env "$@" valgrind --tool=callgrind --callgrind-out-file="$out" "$binary" > "$work/$name.log" 2>&1 &
  pid=$!
  local up=
  for _ in $(seq 180); do
    if curl -fs -o /dev/null -H "x-api-key: $key" "http://127.0.0.1:$port/v1/orders/$first_id"; then
      up=1
      break
    fi
    kill -0 "$pid" 2> /dev/null || break
    sleep 1
  done
  [[ -n "$up" ]] || { echo "bench-instructions: $name did not answer (see $work/$name.log)" >&2; exit 1; }
  for _ in 1 2 3; do curl -fs -o /dev/null -H "x-api-key: $key" "http://127.0.0.1:$port/v1/orders/$first_id"; done
  callgrind_control -z "$pid" > /dev/null 2>&1
  local answered
  answered=$(wrk -t1 -c16 -d"${seconds}s" -s scripts/bench-compare.lua "http://127.0.0.1:$port" -- \
    "$work/ids.txt" /v1/orders/ "$key" | awk '/requests in/ {print $1}')
  callgrind_control -d "$pid" > /dev/null 2>&1
  sleep 1
  kill "$pid" 2> /dev/null || true
  wait "$pid" 2> /dev/null || true
  pid=
  [[ -n "$answered" ]] || { echo "bench-instructions: wrk reported no requests for $name" >&2; exit 1; }
  python3 scripts/callgrind_summary.py --name "$name" --requests "$answered" --top "$top" "$out".*
}

rev=$(git rev-parse --short HEAD 2> /dev/null || echo unknown)
echo "bench-instructions: $(date -u '+%Y-%m-%d %H:%M UTC'), rev $rev, $(nproc) CPUs, valgrind $(valgrind --version)"
measure gateway "$hit_server" HIT_SERVER_LISTEN="127.0.0.1:$port" HIT_SERVER_ORDERS=6666
measure bare "$bare_server" BARE_SERVER_LISTEN="127.0.0.1:$port" BARE_SERVER_DATA="$work/orders.tsv"
