# promtool (a tool, not a server: no promtool_start), built from the Go module
# proxy: it checks and unit-tests deploy/observability/alerts.yml
# (tests/observability.rs). Prometheus publishes its Go module as v0.<minor>.<patch>
# for release 3.<minor>.<patch>; v0.316.0 is Prometheus 3.16.0. Built once
# into $(dist_dir promtool-<version>), several minutes on 2 cores from an
# empty module cache (promtool links Prometheus's service discovery).

PROMTOOL_VERSION="${PROMTOOL_VERSION:-v0.316.0}"

promtool_bin() { printf '%s/promtool' "$(dist_dir "promtool-$PROMTOOL_VERSION")"; }

promtool_install() {
  local dist; dist="$(dist_dir "promtool-$PROMTOOL_VERSION")"
  if promtool_health; then return 0; fi
  local go; go="$(command -v go || true)"
  [[ -n "$go" ]] || go=/usr/local/go/bin/go
  [[ -x "$go" ]] || fail "promtool: Go is needed to build promtool $PROMTOOL_VERSION (install it, or put go on PATH)"
  log "building promtool $PROMTOOL_VERSION from the Go module proxy into $dist (first time only; several minutes)"
  local build="$STACK_DIR/build/promtool"
  rm -rf "$build" && mkdir -p "$build" "$dist"
  (
    cd "$build"
    export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
    "$go" mod init stack.local/promtool >/dev/null 2>&1
    "$go" get -tool "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION" >&2
    "$go" build -trimpath -ldflags='-s -w' -o "$dist/promtool" github.com/prometheus/prometheus/cmd/promtool >&2
  ) || fail "promtool: building github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION failed ($("$go" version))"
  rm -rf "$build"
  promtool_health || fail "promtool: $(promtool_bin) does not run"
}

promtool_health() {
  "$(promtool_bin)" --version >/dev/null 2>&1
}
