#!/usr/bin/env bash
# `make chaos`: the reliability suite at full size (tests/chaos, CHAOS=full)
# against the release gateway, then the scenarios that need a cluster on the
# stack's cluster variant (3 Kafka brokers, 2 Elasticsearch nodes), and the
# table written to RELIABILITY.md with the date, machine and revision.
#
#   SOAK=10m         length of the soak (default 10m)
#   ONLY=<filter>    run only the scenarios whose test name contains it
#   CLUSTER=0        skip the cluster scenarios
#   REPORT=<file>    where the table goes (default RELIABILITY.md)
#
# Loopback only; every scenario is bounded (CHAOS_TIMEOUT per cargo run,
# default 45 min); what this script starts it stops, and a single-node stack
# that was running before is running again after.
set -euo pipefail
cd "$(dirname "$0")/.."

export CHAOS=full SOAK="${SOAK:-10m}"
REPORT="${REPORT:-RELIABILITY.md}"
CHAOS_TIMEOUT="${CHAOS_TIMEOUT:-2700}"
rows="$(mktemp)"
export CHAOS_REPORT="$rows"
source scripts/stack/lib.sh

echo "[chaos] building the release gateway and the suite" >&2
cargo build --locked --release --bin order-gateway
# The suite itself (the load generator and checks) is the debug build make
# test already has: a release build of the test dependencies would add
# about ten minutes for a generator that idles at these rates.
cargo test --locked --test chaos --no-run
export ORDER_GATEWAY_BIN="$PWD/target/release/order-gateway"
# What the gateways under test logged, for reading a row afterwards.
export GATEWAY_LOG="$STACK_DIR/logs/chaos-gateway.log"
mkdir -p "$(dirname "$GATEWAY_LOG")"; : > "$GATEWAY_LOG"

# Only what this run starts is stopped afterwards.
started_here=()
for c in "${STACK_COMPONENTS[@]}"; do
  if ! running_pid "$c" >/dev/null 2>&1; then started_here+=("$c"); fi
done
cluster_up=0
restore() {
  local rc=$?
  if (( cluster_up )); then
    echo "[chaos] stopping the cluster variant" >&2
    scripts/stack/stop kafka elasticsearch || true
    STACK_KAFKA_BROKERS=1 STACK_ES_NODES=1 scripts/stack/start kafka elasticsearch || true
  fi
  if (( ${#started_here[@]} )); then scripts/stack/stop "${started_here[@]}" || true; fi
  rm -f "$rows"
  exit $rc
}
trap restore EXIT

run_suite() { # FILTER: the scenarios of tests/chaos whose names contain it
  timeout --signal=INT "$CHAOS_TIMEOUT" \
    cargo test --locked --test chaos -- --nocapture --test-threads=1 "$@"
}

failed=0
STACK_KAFKA_BROKERS=1 STACK_ES_NODES=1 scripts/stack/start
eval "$(scripts/stack/env)"
echo "[chaos] single-node scenarios" >&2
run_suite --skip cluster_ ${ONLY:+"$ONLY"} || failed=1

if [[ "${CLUSTER:-1}" != 0 && ( -z "${ONLY:-}" || "${ONLY:-}" == cluster* ) ]]; then
  echo "[chaos] cluster scenarios: 3 Kafka brokers, 2 Elasticsearch nodes" >&2
  scripts/stack/stop kafka elasticsearch
  cluster_up=1
  STACK_KAFKA_BROKERS=3 STACK_ES_NODES=2 scripts/stack/start kafka elasticsearch
  eval "$(STACK_KAFKA_BROKERS=3 STACK_ES_NODES=2 scripts/stack/env)"
  run_suite cluster_ || failed=1
fi

cpu="$(sed -n 's/^model name\s*:\s*//p' /proc/cpuinfo | head -n 1)"
mem="$(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo)"
{
  cat <<EOT
# Reliability under load

Written by \`make chaos\` (scripts/chaos.sh): each row is one scenario of
tests/chaos, run at full size (\`CHAOS=full\`, soak \`SOAK=$SOAK\`) against the
release binary, under open-model load (requests are sent on schedule whether or
not earlier ones were answered; latency counts from when a request was due).
The short form of the same scenarios runs in \`make test\`.

- Date: $(date -u +%Y-%m-%d), revision $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src tests || echo ' (with uncommitted changes)')
- Machine: $(nproc) cores ($cpu), $mem; the gateway, the load generator and
  every backend share these cores.
- Columns: offered rate; requests answered successfully; failures by status or
  error; p99 latency of what was in flight while the fault lasted; time from the
  component being healthy again to the invariant holding again; what was
  checked and seen.

| fault | load | offered | answered | failed | p99 during fault | recovery | invariant checked | result |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
EOT
  cat "$rows"
  echo
  if (( failed )); then echo "At least one scenario failed or did not finish: see its row (or its absence) and the run's output."; fi
  # What people wrote about a run (below the marker) stays until they change it.
  if [[ -f "$REPORT" ]] && grep -q '^<!-- notes -->' "$REPORT"; then
    echo; sed -n '/^<!-- notes -->/,$p' "$REPORT"
  fi
} > "$REPORT.new"
mv "$REPORT.new" "$REPORT"
echo "[chaos] wrote $REPORT" >&2
exit $failed
