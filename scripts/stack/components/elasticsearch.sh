# Elasticsearch 8.19 (single node, security off) for the native stack. Sourced by lib.sh users.
#
# No Elasticsearch distribution can be downloaded here (only Maven Central), so install resolves
# the server jar and the Netty4 transport/HTTP plugin from Maven Central (pom.xml under
# scripts/stack/elasticsearch/) and compiles a small launcher (DevNode.java) that starts the node
# in-process with those plugins on the classpath. Only the server core is present: no x-pack
# (hence no security to turn off), no painless, reindex, ingest-common, analysis-common,
# mapper-extras, data-streams modules. See scripts/stack/elasticsearch/README.md.
#
# Environment: ES_PORT, ES_TRANSPORT_PORT (lib.sh), ES_HEAP (default "-Xms512m -Xmx1g",
# per node), ES_JAVA_OPTS (extra JVM flags), ES_JAVA (java binary, default: java on PATH;
# needs Java >= 17).
#
# Cluster variant: STACK_ES_NODES=2 (default 1; 1 to 9) runs that many nodes as one
# cluster (order-gateway-dev-cluster). Node i uses ES_PORT+(i-1) and ES_TRANSPORT_PORT+(i-1)
# (Elasticsearch's own port ranges; +100 would put node 2's HTTP on node 1's transport port):
#   node 1  http 9200  transport 9300  run/elasticsearch.pid    logs/elasticsearch.log
#   node 2  http 9201  transport 9301  run/elasticsearch-2.pid  logs/elasticsearch-2.log
# Data: $(data_dir elasticsearch)-cluster/node-<i>, never the single node's. Master-eligible:
# node 1 alone below three nodes (two voters could not lose one), nodes 1 to 3 from three
# on; the others hold data. So node 2 of two may be killed (node 1 answers, yellow while
# replicas are missing); node 1 may not. Replicas are the indices' own settings (setup's
# setup.index_replicas). start waits for green with every node in the cluster.

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

# Node count of the selected variant: STACK_ES_NODES, else what runs, else 1.
elasticsearch_nodes() { stack_node_count elasticsearch STACK_ES_NODES; }
# es_port BASE NODE: node NODE's port for a base port (node 1: BASE itself).
es_port() { printf '%s' "$(( $1 + $2 - 1 ))"; }
# es_urls: every node's HTTP address, comma-separated.
es_urls() {
  local n i out=""; n="$(elasticsearch_nodes)"
  for (( i = 1; i <= n; i++ )); do out+="${out:+,}http://$STACK_BIND:$(es_port "$ES_PORT" "$i")"; done
  printf '%s' "$out"
}
_es_masters() { if (( $1 < 3 )); then printf 1; else printf 3; fi; }

# elasticsearch_start [NODE]: start node NODE (default 1) of the selected variant.
elasticsearch_start() {
  local node="${1:-1}" n name dist data tmp logs java
  n="$(elasticsearch_nodes)"; name="$(node_name elasticsearch "$node")"
  dist="$(dist_dir elasticsearch)"
  tmp="$STACK_DIR/tmp/$name"; logs="$STACK_DIR/logs/$name"
  java="${ES_JAVA:-java}"
  local cluster=()
  if (( n == 1 )); then
    data="$(data_dir elasticsearch)"
    cluster=(cluster.name=order-gateway-dev node.name=order-gateway-dev-1 discovery.type=single-node)
  else
    data="$(data_dir elasticsearch)-cluster/node-$node"
    local masters i seeds="" initial=""; masters="$(_es_masters "$n")"
    for (( i = 1; i <= masters; i++ )); do
      seeds+="${seeds:+,}$STACK_BIND:$(es_port "$ES_TRANSPORT_PORT" "$i")"
      initial+="${initial:+,}order-gateway-dev-$i"
    done
    cluster=(cluster.name=order-gateway-dev-cluster node.name="order-gateway-dev-$node" discovery.seed_hosts="$seeds")
    if (( node > masters )); then
      cluster+=(node.roles=data,ingest)
    elif [[ ! -d "$data/_state" ]]; then
      # Bootstrapping only: a node that has joined once must not carry it (8.x warns).
      cluster+=(cluster.initial_master_nodes="$initial")
    fi
  fi
  mkdir -p "$data" "$tmp" "$logs"
  # shellcheck disable=SC2086  # ES_HEAP / ES_JAVA_OPTS are word lists on purpose
  start_daemon "$name" "$java" \
    ${ES_HEAP:--Xms512m -Xmx1g} \
    -XX:+UseG1GC -XX:-OmitStackTraceInFastThrow -XX:+ExitOnOutOfMemoryError \
    -Djava.io.tmpdir="$tmp" -Dfile.encoding=UTF-8 -Djava.locale.providers=SPI,CLDR \
    -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true \
    -Dio.netty.recycler.maxCapacityPerThread=0 \
    -Dlog4j.shutdownHookEnabled=false -Dlog4j2.disable.jmx=true -Dlog4j2.formatMsgNoLookups=true \
    ${ES_JAVA_OPTS:-} \
    -cp "$dist/classes:$dist/lib/*" org.elasticsearch.node.DevNode \
    "${cluster[@]}" \
    path.home="$dist/home" \
    path.data="$data" \
    path.logs="$logs" \
    network.host="$STACK_BIND" \
    http.port="$(es_port "$ES_PORT" "$node")" \
    transport.port="$(es_port "$ES_TRANSPORT_PORT" "$node")" \
    cluster.routing.allocation.disk.threshold_enabled=false
}

# elasticsearch_health [NODE]: node NODE answers, in a cluster with a master, yellow or green.
elasticsearch_health() {
  local body
  body="$(curl -fsS --max-time 3 "http://$STACK_BIND:$(es_port "$ES_PORT" "${1:-1}")/_cluster/health")" || return 1
  [[ "$body" =~ \"status\":\"(green|yellow)\" ]]
}

# The cluster has formed: every node in it and every shard copy allocated (green).
elasticsearch_ready() {
  local n i body; n="$(elasticsearch_nodes)"
  (( n > 1 )) || return 0
  for (( i = 1; i <= n; i++ )); do
    body="$(curl -fsS --max-time 3 "http://$STACK_BIND:$(es_port "$ES_PORT" "$i")/_cluster/health")" || continue
    [[ "$body" =~ \"status\":\"green\" && "$body" =~ \"number_of_nodes\":$n, ]] && return 0
    echo "cluster health: $body"
    return 1
  done
  echo "no node answers"
  return 1
}
