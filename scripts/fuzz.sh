#!/usr/bin/env bash
# API fuzzing: schemathesis against a running gateway's /openapi.json.
#
#   FUZZ_BASE_URL=http://127.0.0.1:8080 FUZZ_API_KEY=... scripts/fuzz.sh
#
# Generates requests from the OpenAPI document and checks every answer: no 5xx
# (not_a_server_error, save the one 503 the API promises: scripts/fuzz_hooks.py),
# a status code and content type the document lists, a body that matches the
# documented schema, documented headers. Deterministic (fixed seed, no example
# database), bounded (FUZZ_MAX_EXAMPLES per operation, FUZZ_MAX_SECONDS for the
# whole run) and local (the base URL must be on 127.0.0.1 / localhost, proxies
# are bypassed). Exits non-zero on any failure; the summary and a JUnit report
# are written under FUZZ_REPORT_DIR.
#
# schemathesis (PyPI, pinned) is installed once into .stack/dist/schemathesis-venv.
#
# Environment:
#   FUZZ_BASE_URL       gateway base URL (default http://127.0.0.1:8080)
#   FUZZ_API_KEY        sent as "Authorization: Bearer <key>"; no header when empty
#   FUZZ_MAX_EXAMPLES   examples per operation and phase (default 50)
#   FUZZ_MAX_SECONDS    wall-clock limit of the run (default 150)
#   FUZZ_SEED           hypothesis seed (default 20240601)
#   FUZZ_WORKERS        concurrent workers (default 1: Python 3.11's ast module is not
#                       thread-safe, and hypothesis parses sources while it generates)
#   FUZZ_REPORT_DIR     reports (default .stack/fuzz)
#   FUZZ_EXTRA_ARGS     more `schemathesis run` options, word-split
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/stack/lib.sh
fail() { printf '[fuzz] error: %s\n' "$*" >&2; exit 1; }

SCHEMATHESIS_VERSION="${SCHEMATHESIS_VERSION:-4.32.5}"
venv="$(dist_dir schemathesis-venv)"
st="$venv/bin/schemathesis"

log_f() { printf '[fuzz] %s\n' "$*" >&2; }

install_schemathesis() {
  if [[ -x "$st" && "$(cat "$venv/.version" 2>/dev/null)" == "$SCHEMATHESIS_VERSION" ]] \
      && "$st" --version >/dev/null 2>&1; then
    return 0
  fi
  log_f "installing schemathesis $SCHEMATHESIS_VERSION from PyPI into $venv"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv" || fail "schemathesis: python3 -m venv failed (is python3-venv installed?)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" >&2 \
    || fail "schemathesis: pip install schemathesis==$SCHEMATHESIS_VERSION failed"
  printf '%s\n' "$SCHEMATHESIS_VERSION" >"$venv/.version"
  "$st" --version >/dev/null 2>&1 || fail "schemathesis: $st does not run"
}

install_schemathesis
[[ "${1:-}" == "--install-only" ]] && exit 0

base="${FUZZ_BASE_URL:-http://127.0.0.1:8080}"
base="${base%/}"
# Only the local machine: the fuzzer sends thousands of odd requests.
[[ "$base" =~ ^http://(127\.0\.0\.1|localhost)(:[0-9]+)?$ ]] \
  || fail "FUZZ_BASE_URL must be http://127.0.0.1[:port] or http://localhost[:port], not '$base'"
max_examples="${FUZZ_MAX_EXAMPLES:-50}"
max_seconds="${FUZZ_MAX_SECONDS:-150}"
seed="${FUZZ_SEED:-20240601}"
workers="${FUZZ_WORKERS:-1}"
reports="${FUZZ_REPORT_DIR:-$STACK_DIR/fuzz}"
mkdir -p "$reports"
reports="$(cd "$reports" && pwd)"
# gateway_not_a_server_error: not_a_server_error except the documented
# read-your-writes 503 (see the file).
hooks="$PWD/scripts/fuzz_hooks.py"

# Never through a proxy: every request stays on this machine.
export NO_PROXY="127.0.0.1,localhost" no_proxy="127.0.0.1,localhost"
curl -fsS --noproxy '*' --max-time 5 -o "$reports/openapi.json" "$base/openapi.json" \
  || fail "no OpenAPI document at $base/openapi.json: is the gateway running?"

args=(
  run "$reports/openapi.json"
  --url "$base"
  --checks gateway_not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance
  --max-examples "$max_examples"
  --seed "$seed"
  --generation-database none
  --workers "$workers"
  --request-timeout 10
  --max-failures 100
  --no-color
  --report junit --report-dir "$reports"
  # Live updates (Server-Sent Events) answer a stream that stays open: a
  # fuzzer reading whole bodies would wait on it until --request-timeout.
  # tests/live.rs covers them.
  --exclude-path-regex '/events$'
)
[[ -n "${FUZZ_API_KEY:-}" ]] && args+=(--header "Authorization: Bearer $FUZZ_API_KEY")
# shellcheck disable=SC2206  # extra options are a word list on purpose
[[ -n "${FUZZ_EXTRA_ARGS:-}" ]] && args+=(${FUZZ_EXTRA_ARGS})

log_f "schemathesis $SCHEMATHESIS_VERSION against $base: seed $seed, $max_examples examples per operation, at most ${max_seconds}s"
rc=0
# Hypothesis keeps its state under the working directory: keep it out of the repo.
# --foreground keeps schemathesis in this process group, so whoever stops this
# script's group (scripts/fuzz-gateway.sh, Ctrl-C) stops it too.
( cd "$reports" && SCHEMATHESIS_HOOKS="$hooks" HYPOTHESIS_STORAGE_DIRECTORY="$reports/.hypothesis" \
    timeout --foreground --signal=INT --kill-after=15 "$max_seconds" "$st" "${args[@]}" ) \
  | tee "$reports/summary.txt" || rc=$?
if (( rc == 124 || rc == 130 )); then
  log_f "FAILED: stopped after ${max_seconds}s (FUZZ_MAX_SECONDS); an incomplete run counts as a failure"
  rc=1
elif (( rc != 0 )); then
  log_f "FAILED (exit $rc): each failure, with a curl command that reproduces it, is above and in $reports/summary.txt"
else
  log_f "passed; summary in $reports/summary.txt"
fi
exit "$rc"
