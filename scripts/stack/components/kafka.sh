# Apache Kafka 4.x, single-node KRaft (broker + controller in one JVM), no Docker.
# Jars come from Maven Central through scripts/stack/kafka/pom.xml; the broker runs
# straight from that classpath (kafka.Kafka), storage is formatted once into the data dir.
#
# Cluster variant: STACK_KAFKA_BROKERS=3 (default 1; 1 to 9) runs that many combined
# broker+controller nodes, all of them voters of the KRaft quorum. Node i uses every base
# port plus 100*(i-1), node 1 the base ports themselves:
#   node 1  client 9092  controller 9093  SASL_SSL 9094  SSL 9095  run/kafka.pid    logs/kafka.log
#   node 2  client 9192  controller 9193  SASL_SSL 9194  SSL 9195  run/kafka-2.pid  logs/kafka-2.log
#   node 3  client 9292  controller 9293  SASL_SSL 9294  SSL 9295  run/kafka-3.pid  logs/kafka-3.log
# Every node has the secured listeners (a client on SASL_SSL must reach each partition's
# leader there). Storage: $(data_dir kafka)-cluster/node-<i> with its own cluster id
# (KAFKA_MULTI_CLUSTER_ID), never the single node's $(data_dir kafka). Topics default to
# replication factor min(3, n) with min.insync.replicas 2 (1 below three brokers), the
# internal topics too. "scripts/stack/stop kafka-2" / "start kafka-2" act on one node.
#   client listener      PLAINTEXT://127.0.0.1:$KAFKA_PORT            (default 9092)
#   controller listener  CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT (default 9093)
#   secured listener     SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT         (default 9094)
#     TLS with $STACK_TLS_DIR/server.pem (scripts/stack/tls.sh; clients trust ca.pem),
#     SASL SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN as $KAFKA_SCRAM_USER / $KAFKA_SCRAM_PASSWORD
#     (gateway / gateway-scram-secret). Inter-broker and controller traffic stay PLAINTEXT;
#     no authorizer, so the user may do anything. kafka_post_start creates the SCRAM
#     credentials, and $(data_dir kafka)/sasl-client.properties lets the Java tools connect:
#   scripts/stack/kafka/run-class org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9094 \
#     --command-config .stack/data/kafka/sasl-client.properties --list
#   mutual-TLS listener  SSL://127.0.0.1:$KAFKA_SSL_PORT              (default 9095)
#     TLS with the same server.pem and ssl.client.auth=required: a client must present a
#     certificate signed by ca.pem (client.pem; other-client.pem, signed by other-ca, is
#     refused in the handshake). No SASL, no authorizer. The Java tools need a keystore,
#     e.g. openssl pkcs12 -export -in client.pem -inkey client.key -passout pass:... -out
#     client.p12, and security.protocol=SSL, ssl.keystore.type=PKCS12 with its location and
#     password, ssl.truststore.type=PEM, ssl.truststore.location=.stack/tls/ca.pem.
# Tools for tests (topics, console producer/consumer):
#   scripts/stack/kafka/run-class org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --list

KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
# Fixed so that a wiped data dir formats to the same cluster; any valid base64 UUID.
KAFKA_CLUSTER_ID="${KAFKA_CLUSTER_ID:-2JHNhqYnXL68L-VkRX_I-g}"
# The cluster variant's, for its separate storage.
KAFKA_MULTI_CLUSTER_ID="${KAFKA_MULTI_CLUSTER_ID:-XEwXopG8SfyGW7JNENI_zQ}"

# Node count of the selected variant: STACK_KAFKA_BROKERS, else what runs, else 1.
kafka_nodes() { stack_node_count kafka STACK_KAFKA_BROKERS; }
# kafka_port BASE NODE: node NODE's port for a base port (node 1: BASE itself).
kafka_port() { printf '%s' "$(( $1 + 100 * ($2 - 1) ))"; }
# kafka_data NODE [N]: node NODE's data dir in the N-node variant (default: the selected one).
kafka_data() {
  local n="${2:-}"; [[ -n "$n" ]] || n="$(kafka_nodes)"
  if (( n == 1 )); then data_dir kafka; else printf '%s-cluster/node-%s' "$(data_dir kafka)" "$1"; fi
}
# kafka_bootstrap BASE: host:port of every node for one listener, comma-separated.
kafka_bootstrap() {
  local base="$1" n i out=""; n="$(kafka_nodes)"
  for (( i = 1; i <= n; i++ )); do out+="${out:+,}$STACK_BIND:$(kafka_port "$base" "$i")"; done
  printf '%s' "$out"
}

kafka_java() { printf '%s' "${JAVA_HOME:+$JAVA_HOME/bin/}java"; }

# The installed classpath is tied to the pom that produced it: a changed pom re-fetches.
kafka_pom_stamp() { sha256sum "$STACK_SCRIPTS/kafka/pom.xml" | cut -d' ' -f1; }

kafka_install() {
  local dist; dist="$(dist_dir kafka)"
  local stamp; stamp="$(kafka_pom_stamp)"
  if [[ -f "$dist/.installed" && "$(cat "$dist/.installed")" == "$stamp" ]]; then
    return 0
  fi
  log "installing kafka jars from Maven Central into $dist/libs"
  rm -rf "$dist/libs.tmp"
  maven_copy_deps "$STACK_SCRIPTS/kafka" "$dist/libs.tmp"
  ls "$dist/libs.tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || fail "kafka: Maven fetched no kafka_2.13 jar"
  rm -rf "$dist/libs"
  mv "$dist/libs.tmp" "$dist/libs"
  printf '%s\n' "$stamp" >"$dist/.installed"
}

# kafka_run_class CLASS ARGS...: run a Kafka main class (tools) on the installed classpath.
kafka_run_class() {
  local dist; dist="$(dist_dir kafka)"
  "$(kafka_java)" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$STACK_SCRIPTS/kafka/log4j2-tools.properties" \
    -cp "$dist/libs/*" "$@"
}

# kafka_write_config DATA NODE N: node NODE's configuration in the N-node variant.
kafka_write_config() {
  local data="$1" node="$2" n="$3" j voters=""
  for (( j = 1; j <= n; j++ )); do voters+="${voters:+,}$j@$STACK_BIND:$(kafka_port "$KAFKA_CONTROLLER_PORT" "$j")"; done
  local port ctl sasl ssl
  port="$(kafka_port "$KAFKA_PORT" "$node")"; ctl="$(kafka_port "$KAFKA_CONTROLLER_PORT" "$node")"
  sasl="$(kafka_port "$KAFKA_SASL_PORT" "$node")"; ssl="$(kafka_port "$KAFKA_SSL_PORT" "$node")"
  # Replication: from three brokers on, three copies of each partition (the internal
  # topics' too), two of them in sync for an acks=all write; fewer brokers, fewer copies.
  local rf=$(( n < 3 ? n : 3 )) isr=$(( n < 3 ? 1 : 2 ))
  cat >"$data/server.properties" <<EOT
# Generated by scripts/stack/components/kafka.sh on every start; edits are overwritten.
process.roles=broker,controller
node.id=$node
controller.quorum.voters=$voters
listeners=PLAINTEXT://$STACK_BIND:$port,CONTROLLER://$STACK_BIND:$ctl,SASL_SSL://$STACK_BIND:$sasl,SSL://$STACK_BIND:$ssl
advertised.listeners=PLAINTEXT://$STACK_BIND:$port,SASL_SSL://$STACK_BIND:$sasl,SSL://$STACK_BIND:$ssl
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$data/kraft-logs
num.partitions=3
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
auto.create.topics.enable=true
delete.topic.enable=true
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
background.threads=4
log.retention.hours=24
log.segment.bytes=67108864
# The secured listener (tests of TLS and SASL). Throwaway certificates and passwords.
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$KAFKA_SCRAM_USER="$KAFKA_SCRAM_PASSWORD";
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$STACK_TLS_DIR/kafka.keystore.p12
listener.name.sasl_ssl.ssl.keystore.password=$STACK_TLS_STORE_PASSWORD
listener.name.sasl_ssl.ssl.key.password=$STACK_TLS_STORE_PASSWORD
listener.name.sasl_ssl.ssl.truststore.type=PKCS12
listener.name.sasl_ssl.ssl.truststore.location=$STACK_TLS_DIR/kafka.truststore.p12
listener.name.sasl_ssl.ssl.truststore.password=$STACK_TLS_STORE_PASSWORD
listener.name.sasl_ssl.ssl.client.auth=none
# The mutual-TLS listener: same server certificate, a client certificate signed by ca.pem required.
listener.name.ssl.ssl.keystore.type=PKCS12
listener.name.ssl.ssl.keystore.location=$STACK_TLS_DIR/kafka.keystore.p12
listener.name.ssl.ssl.keystore.password=$STACK_TLS_STORE_PASSWORD
listener.name.ssl.ssl.key.password=$STACK_TLS_STORE_PASSWORD
listener.name.ssl.ssl.truststore.type=PKCS12
listener.name.ssl.ssl.truststore.location=$STACK_TLS_DIR/kafka.truststore.p12
listener.name.ssl.ssl.truststore.password=$STACK_TLS_STORE_PASSWORD
listener.name.ssl.ssl.client.auth=required
EOT
  # For the Java tools (run-class ... --command-config): SCRAM-SHA-512 over the secured listener.
  cat >"$data/sasl-client.properties" <<EOT
# Generated by scripts/stack/components/kafka.sh on every start; edits are overwritten.
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$KAFKA_SCRAM_USER" password="$KAFKA_SCRAM_PASSWORD";
ssl.truststore.type=PEM
ssl.truststore.location=$STACK_TLS_DIR/ca.pem
EOT
}

# kafka_start [NODE]: start node NODE (default 1) of the selected variant.
kafka_start() {
  local node="${1:-1}" n dist data name cluster_id
  n="$(kafka_nodes)"; dist="$(dist_dir kafka)"; data="$(kafka_data "$node" "$n")"
  name="$(node_name kafka "$node")"; cluster_id="$KAFKA_CLUSTER_ID"
  if (( n > 1 )); then
    # The voters are formatted into the storage: a cluster of another size needs new storage.
    local topo; topo="$(dirname "$data")/brokers"
    if [[ -f "$topo" && "$(cat "$topo")" != "$n" ]]; then
      fail "kafka: $(dirname "$data") holds a $(cat "$topo")-broker cluster, not $n; remove it (its topics go too) or set STACK_KAFKA_BROKERS=$(cat "$topo")"
    fi
    mkdir -p "$(dirname "$data")"; printf '%s\n' "$n" >"$topo"
    cluster_id="$KAFKA_MULTI_CLUSTER_ID"
  fi
  mkdir -p "$data"
  tls_ensure
  kafka_write_config "$data" "$node" "$n"
  if [[ ! -f "$data/kraft-logs/meta.properties" ]]; then
    log "formatting $name storage in $data/kraft-logs (cluster id $cluster_id)"
    mkdir -p "$STACK_DIR/logs"
    kafka_run_class kafka.tools.StorageTool format \
      --config "$data/server.properties" --cluster-id "$cluster_id" --ignore-formatted \
      >>"$(log_file "$name")" 2>&1 || fail "$name storage format failed; see $(log_file "$name")"
  fi
  # shellcheck disable=SC2086  # KAFKA_HEAP_OPTS is a list of JVM flags
  start_daemon "$name" "$(kafka_java)" $KAFKA_HEAP_OPTS \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true \
    -Dlog4j2.configurationFile="$STACK_SCRIPTS/kafka/log4j2.properties" \
    -Dkafka.logs.dir="$data/app-logs" \
    -cp "$dist/libs/*" kafka.Kafka "$data/server.properties"
}

# kafka_health [NODE]: node NODE answers a Metadata request that lists a broker.
kafka_health() {
  python3 "$STACK_SCRIPTS/kafka/probe.py" "$STACK_BIND" "$(kafka_port "$KAFKA_PORT" "${1:-1}")" 2
}

# The cluster has formed: the first node that answers lists every broker (unfenced ones only).
kafka_ready() {
  local n i seen; n="$(kafka_nodes)"
  (( n > 1 )) || return 0
  for (( i = 1; i <= n; i++ )); do
    seen="$(python3 "$STACK_SCRIPTS/kafka/probe.py" "$STACK_BIND" "$(kafka_port "$KAFKA_PORT" "$i")" 2 2>/dev/null | grep -c '^broker')" || continue
    (( seen >= n )) && return 0
    echo "the metadata lists $seen of $n brokers"
    return 1
  done
  echo "no node answers"
  return 1
}

# Once healthy: the secured listeners must be up (a broker started before they
# existed needs a restart), and the SCRAM credentials are created through the
# PLAINTEXT listener unless this storage already has them (a stamp in the data
# dir naming the storage's directory.id, the user and the password's hash).
kafka_post_start() {
  local n data i node; n="$(kafka_nodes)"; data="$(kafka_data 1 "$n")"
  local listener port
  for (( node = 1; node <= n; node++ )); do
    running_pid "$(node_name kafka "$node")" >/dev/null || continue
    for listener in "SASL_SSL:$KAFKA_SASL_PORT" "SSL:$KAFKA_SSL_PORT"; do
      port="$(kafka_port "${listener#*:}" "$node")"
      for i in $(seq 1 10); do
        (exec 3<>"/dev/tcp/$STACK_BIND/$port") 2>/dev/null && break
        sleep 1
      done
      if ! (exec 3<>"/dev/tcp/$STACK_BIND/$port") 2>/dev/null; then
        fail "$(node_name kafka "$node") is running without its ${listener%%:*} listener on $STACK_BIND:$port (started by an older scripts/stack); restart it: scripts/stack/stop kafka && scripts/stack/start kafka"
      fi
    done
  done
  local dir_id stamp
  dir_id="$(sed -n 's/^directory\.id=//p' "$data/kraft-logs/meta.properties" 2>/dev/null)"
  stamp="$dir_id $KAFKA_SCRAM_USER $(printf '%s' "$KAFKA_SCRAM_PASSWORD" | sha256sum | cut -d' ' -f1)"
  [[ "$(cat "$data/.scram-users" 2>/dev/null)" == "$stamp" ]] && return 0
  # One mechanism per request: the broker refuses two changes of one user's credentials at once.
  local mech
  for mech in SCRAM-SHA-512 SCRAM-SHA-256; do
    log "kafka: creating the $mech credentials of user $KAFKA_SCRAM_USER"
    kafka_run_class org.apache.kafka.tools.ConfigCommand --bootstrap-server "$(kafka_bootstrap "$KAFKA_PORT")" \
      --alter --entity-type users --entity-name "$KAFKA_SCRAM_USER" \
      --add-config "$mech=[password=$KAFKA_SCRAM_PASSWORD]" \
      >>"$(log_file kafka)" 2>&1 || fail "kafka: creating the SCRAM user failed; see $(log_file kafka)"
  done
  printf '%s\n' "$stamp" >"$data/.scram-users"
}
