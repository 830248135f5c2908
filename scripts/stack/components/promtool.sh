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
  log "building promtool $PROMTOOL_VERSION from the Go module proxy into $dist (first time only; several minutes)"
  go_build_tool promtool github.com/prometheus/prometheus/cmd/promtool "$PROMTOOL_VERSION" "$dist"
  promtool_health || fail "promtool: $(promtool_bin) does not run"
}

promtool_health() {
  "$(promtool_bin)" --version >/dev/null 2>&1
}
