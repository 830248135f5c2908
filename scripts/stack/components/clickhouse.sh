# ClickHouse 26.x without Docker: the engine is chDB's libchdb.so from the npm package
# @chdb/lib-linux-x64-gnu (pinned; npm's "latest" tag points at an older release),
# run by a tiny launcher (scripts/stack/clickhouse/launcher.c) with clickhouse-local
# arguments. chDB serves HTTP/TCP only while a query runs, so the server's "main"
# query opens the listeners and then sleeps one row per second for ~31 years.
#   HTTP    http://127.0.0.1:$CLICKHOUSE_HTTP_PORT   (default 8123)
#   native  127.0.0.1:$CLICKHOUSE_TCP_PORT           (default 9000)
# Data lives in $(data_dir clickhouse) and survives restarts. User "default", no password.

CLICKHOUSE_START_TIMEOUT="${CLICKHOUSE_START_TIMEOUT:-60}"
CLICKHOUSE_CHDB_PACKAGE="${CLICKHOUSE_CHDB_PACKAGE:-@chdb/lib-linux-x64-gnu@26.7.3-stable.1}"

clickhouse_install() {
  local dist; dist="$(dist_dir clickhouse)"
  local src="$STACK_SCRIPTS/clickhouse/launcher.c"
  if [[ ! -f "$dist/libchdb.so" || "$(cat "$dist/.package" 2>/dev/null)" != "$CLICKHOUSE_CHDB_PACKAGE" ]]; then
    log "installing clickhouse: npm pack $CLICKHOUSE_CHDB_PACKAGE (~180 MB download, 570 MB unpacked)"
    mkdir -p "$dist"
    local tmp; tmp="$(mktemp -d "$dist/.pack.XXXXXX")"
    ( cd "$tmp" && npm pack --silent "$CLICKHOUSE_CHDB_PACKAGE" >/dev/null ) \
      || { rm -rf "$tmp"; fail "clickhouse: npm pack $CLICKHOUSE_CHDB_PACKAGE failed"; }
    local tgz; tgz="$(ls "$tmp"/*.tgz)"
    tar -xzf "$tgz" -C "$tmp" package/libchdb.so \
      || { rm -rf "$tmp"; fail "clickhouse: libchdb.so missing from $tgz"; }
    mv -f "$tmp/package/libchdb.so" "$dist/libchdb.so"
    rm -rf "$tmp" "$dist/chdb-server"
    printf '%s\n' "$CLICKHOUSE_CHDB_PACKAGE" >"$dist/.package"
  fi
  if [[ ! -x "$dist/chdb-server" || "$src" -nt "$dist/chdb-server" ]]; then
    log "compiling the clickhouse launcher"
    # $ORIGIN: the library is found beside the launcher, so a checkout (and
    # its .stack) can be moved or copied without breaking ClickHouse.
    cc -O2 -Wall -o "$dist/chdb-server.tmp" "$src" -L"$dist" -lchdb -Wl,-rpath,'$ORIGIN' \
      || fail "clickhouse: compiling $src failed"
    mv -f "$dist/chdb-server.tmp" "$dist/chdb-server"
  fi
}

clickhouse_start() {
  local dist data; dist="$(dist_dir clickhouse)"; data="$(data_dir clickhouse)"
  mkdir -p "$data"
  start_daemon clickhouse "$dist/chdb-server" \
    --path="$data" \
    --listen_host="$STACK_BIND" \
    --http_port="$CLICKHOUSE_HTTP_PORT" \
    --tcp_port="$CLICKHOUSE_TCP_PORT" \
    --multiquery \
    --query "SYSTEM START LISTEN HTTP; SYSTEM START LISTEN TCP; SELECT sleepEachRow(1) FROM numbers(1000000000) SETTINGS function_sleep_max_microseconds_per_block=0, max_block_size=1, max_execution_time=0 FORMAT Null"
}

clickhouse_health() {
  [[ "$(curl -fsS --max-time 3 "http://$STACK_BIND:$CLICKHOUSE_HTTP_PORT/ping")" == "Ok." ]]
}
