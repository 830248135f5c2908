# Elasticsearch 8.19 (single node, security off) for the native stack. Sourced by lib.sh users.
#
# No Elasticsearch distribution can be downloaded here (only Maven Central), so install resolves
# the server jar and the Netty4 transport/HTTP plugin from Maven Central (pom.xml under
# scripts/stack/elasticsearch/) and compiles a small launcher (DevNode.java) that starts the node
# in-process with those plugins on the classpath. Only the server core is present: no x-pack
# (hence no security to turn off), no painless, reindex, ingest-common, analysis-common,
# mapper-extras, data-streams modules. See scripts/stack/elasticsearch/README.md.
#
# Environment: ES_PORT, ES_TRANSPORT_PORT (lib.sh), ES_HEAP (default "-Xms512m -Xmx1g"),
# ES_JAVA_OPTS (extra JVM flags), ES_JAVA (java binary, default: java on PATH; needs Java >= 17).

ELASTICSEARCH_START_TIMEOUT="${ELASTICSEARCH_START_TIMEOUT:-180}"

_es_src_dir() { printf '%s/elasticsearch' "$STACK_SCRIPTS"; }

# Fingerprint of what install builds from; a change (e.g. a version bump in pom.xml) reinstalls.
_es_stamp() {
  local src; src="$(_es_src_dir)"
  cat "$src/pom.xml" "$src/log4j2.properties" "$src"/*.java | sha256sum | cut -d' ' -f1
}

elasticsearch_install() {
  local dist src stamp
  dist="$(dist_dir elasticsearch)"; src="$(_es_src_dir)"; stamp="$(_es_stamp)"
  if [[ -f "$dist/.installed" && "$(cat "$dist/.installed")" == "$stamp" ]]; then
    return 0
  fi
  command -v mvn >/dev/null || fail "elasticsearch: mvn (Maven) is needed to install"
  command -v javac >/dev/null || fail "elasticsearch: javac (JDK >= 17) is needed to install"
  log "installing elasticsearch into $dist"
  rm -rf "$dist"
  mkdir -p "$dist"
  maven_copy_deps "$src" "$dist/lib.tmp"
  javac --release 17 -nowarn -d "$dist/classes.tmp" -cp "$dist/lib.tmp/*" "$src"/*.java >&2
  mv "$dist/lib.tmp" "$dist/lib"
  mv "$dist/classes.tmp" "$dist/classes"
  mkdir -p "$dist/home/config"
  cp "$src/log4j2.properties" "$dist/home/config/"
  printf '%s\n' "$stamp" >"$dist/.installed"
}

elasticsearch_start() {
  local dist data tmp logs java
  dist="$(dist_dir elasticsearch)"; data="$(data_dir elasticsearch)"
  tmp="$STACK_DIR/tmp/elasticsearch"; logs="$STACK_DIR/logs/elasticsearch"
  java="${ES_JAVA:-java}"
  mkdir -p "$data" "$tmp" "$logs"
  # shellcheck disable=SC2086  # ES_HEAP / ES_JAVA_OPTS are word lists on purpose
  start_daemon elasticsearch "$java" \
    ${ES_HEAP:--Xms512m -Xmx1g} \
    -XX:+UseG1GC -XX:-OmitStackTraceInFastThrow -XX:+ExitOnOutOfMemoryError \
    -Djava.io.tmpdir="$tmp" -Dfile.encoding=UTF-8 -Djava.locale.providers=SPI,CLDR \
    -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true \
    -Dio.netty.recycler.maxCapacityPerThread=0 \
    -Dlog4j.shutdownHookEnabled=false -Dlog4j2.disable.jmx=true -Dlog4j2.formatMsgNoLookups=true \
    ${ES_JAVA_OPTS:-} \
    -cp "$dist/classes:$dist/lib/*" org.elasticsearch.node.DevNode \
    cluster.name=order-gateway-dev \
    node.name=order-gateway-dev-1 \
    path.home="$dist/home" \
    path.data="$data" \
    path.logs="$logs" \
    network.host="$STACK_BIND" \
    http.port="$ES_PORT" \
    transport.port="$ES_TRANSPORT_PORT" \
    discovery.type=single-node \
    cluster.routing.allocation.disk.threshold_enabled=false
}

elasticsearch_health() {
  local body
  body="$(curl -fsS --max-time 3 "http://$STACK_BIND:$ES_PORT/_cluster/health")" || return 1
  [[ "$body" =~ \"status\":\"(green|yellow)\" ]]
}
