#!/usr/bin/env bash
# `make test`: build once, start the native stack, run every test, fuzz the API
# (scripts/fuzz-gateway.sh; FUZZ=0 skips it), build and run the container image
# (scripts/image-test.sh; IMAGE=0 skips it), stop the stack.
# Exits non-zero when anything fails; the stack is stopped in every case.
set -euo pipefail
cd "$(dirname "$0")/.."

started_here=()
cleanup() {
  local rc=$?
  if (( ${#started_here[@]} )); then
    echo "[test] stopping the stack" >&2
    scripts/stack/stop "${started_here[@]}" || true
  fi
  exit $rc
}
trap cleanup EXIT

# Build before starting the stack: compilation and the JVMs would fight for two cores.
echo "[test] building" >&2
cargo build --locked --all-targets

# Only what this run starts is stopped afterwards, so `make test` beside a
# running `make dev` leaves the developer's stack alone.
source scripts/stack/lib.sh
for c in "${STACK_COMPONENTS[@]}"; do
  if ! running_pid "$c" >/dev/null 2>&1; then started_here+=("$c"); fi
done
echo "[test] starting the stack" >&2
scripts/stack/start
eval "$(scripts/stack/env)"

echo "[test] running the tests" >&2
cargo test --locked --lib --bins --tests --no-fail-fast -- --test-threads="${TEST_THREADS:-4}"
# Each criterion benchmark once, as a smoke test (its harness has no --test-threads).
cargo test --locked --benches

# The Kubernetes manifests, offline (scripts/validate-manifests.sh; a few seconds
# once its venv and tools are cached): MANIFESTS=0 skips this.
if [[ "${MANIFESTS:-1}" != 0 ]]; then
  echo "[test] validating the Kubernetes manifests (MANIFESTS=0 skips this)" >&2
  scripts/validate-manifests.sh
fi

# schemathesis against the debug gateway built above (target/debug/order-gateway),
# bounded to FUZZ_MAX_SECONDS (default 150 s).
if [[ "${FUZZ:-1}" != 0 ]]; then
  echo "[test] fuzzing the API (FUZZ=0 skips this)" >&2
  scripts/fuzz-gateway.sh
fi

# The container image built from the Dockerfile and run against the stack
# (scripts/image-test.sh: podman is installed when no engine is there; skipped
# with a message where that cannot be), and docker-compose.yml validated and
# checked for safe defaults (scripts/compose-check.sh). IMAGE=0 skips both.
if [[ "${IMAGE:-1}" != 0 ]]; then
  echo "[test] the compose file and the container image (IMAGE=0 skips this)" >&2
  scripts/compose-check.sh
  scripts/image-test.sh
fi
