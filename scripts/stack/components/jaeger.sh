# Jaeger v2 (the OpenTelemetry Collector with Jaeger's storage and query
# extensions), built from the Go module proxy: the OTLP receiver the gateway's
# traces go to (OTLP/HTTP on $JAEGER_OTLP_PORT, default 4318), kept in memory,
# read back through the query API and UI on $JAEGER_QUERY_PORT (16686).
#   http://127.0.0.1:16686/api/traces/<trace id>    (what the tests read)
# Module v1.76.0 is the Jaeger v2 release of that date (Jaeger tags its Go
# module v1.x); install builds cmd/jaeger once, about 3 minutes on 2 cores
# from an empty module cache.

JAEGER_VERSION="${JAEGER_VERSION:-v1.76.0}"
JAEGER_START_TIMEOUT="${JAEGER_START_TIMEOUT:-60}"

jaeger_bin() { printf '%s/jaeger' "$(dist_dir "jaeger-$JAEGER_VERSION")"; }

jaeger_install() {
  local dist; dist="$(dist_dir "jaeger-$JAEGER_VERSION")"
  if [[ -x "$(jaeger_bin)" ]] && "$(jaeger_bin)" version >/dev/null 2>&1; then return 0; fi
  log "building Jaeger $JAEGER_VERSION (cmd/jaeger) from the Go module proxy into $dist (first time only; a few minutes)"
  go_build_tool jaeger github.com/jaegertracing/jaeger/cmd/jaeger "$JAEGER_VERSION" "$dist"
  "$(jaeger_bin)" version >/dev/null 2>&1 || fail "jaeger: $(jaeger_bin) does not run"
}

jaeger_start() {
  local data; data="$(data_dir jaeger)"
  mkdir -p "$data"
  # Only what the stack needs: OTLP over HTTP in, memory storage, the query
  # API; no other receivers, and the collector's own metrics off (their port
  # is fixed and would clash with a second stack).
  cat >"$data/config.yaml" <<EOF
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: "$STACK_BIND:$JAEGER_HEALTH_PORT"
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: "$STACK_BIND:$JAEGER_QUERY_PORT"
    grpc:
      endpoint: "$STACK_BIND:$JAEGER_QUERY_GRPC_PORT"
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      http:
        endpoint: "$STACK_BIND:$JAEGER_OTLP_PORT"
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
EOF
  start_daemon jaeger "$(jaeger_bin)" --config "$data/config.yaml"
}

jaeger_health() {
  http_ok "http://$STACK_BIND:$JAEGER_QUERY_PORT/api/services" \
    && curl -sS --max-time 3 -o /dev/null -X POST -H 'Content-Type: application/json' --data '{}' \
      "http://$STACK_BIND:$JAEGER_OTLP_PORT/v1/traces"
}
