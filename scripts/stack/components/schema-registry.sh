# Schema registry without Docker: a small in-memory server speaking the Confluent
# Schema Registry REST API (scripts/stack/schema-registry/registry.py, Python stdlib).
# Apicurio Registry 2.6 was the plan, but Maven Central has no runnable build of it
# (no "-runner" jar) and some of its modules are not there to build one.
#   http://127.0.0.1:$SCHEMA_REGISTRY_PORT/apis/ccompat/v7   (default port 8081; "/" works too)
# Storage is in memory: every start begins with no schemas. Compatibility levels are
# stored but not enforced.

SCHEMA_REGISTRY_START_TIMEOUT="${SCHEMA_REGISTRY_START_TIMEOUT:-30}"

schema_registry_install() {
  command -v python3 >/dev/null || fail "schema-registry: python3 is required"
}

schema_registry_start() {
  # -u: unbuffered, so the request log reaches the log file as it happens
  start_daemon schema-registry python3 -u "$STACK_SCRIPTS/schema-registry/registry.py" \
    --host "$STACK_BIND" --port "$SCHEMA_REGISTRY_PORT"
}

schema_registry_health() {
  http_ok "http://$STACK_BIND:$SCHEMA_REGISTRY_PORT/apis/ccompat/v7/subjects"
}
