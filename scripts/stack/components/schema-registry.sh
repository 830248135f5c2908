# Apicurio Registry 2.4.2 (in-memory storage), a real schema registry with the
# Confluent-compatible API at /apis/ccompat/v7. Maven Central publishes its
# jars but no runnable build, so install runs the Quarkus build of
# scripts/stack/schema-registry/pom.xml once (about 2 minutes from an empty
# Maven cache), with the app's own application.properties and web.xml taken
# from its published jar.
#   http://127.0.0.1:$SCHEMA_REGISTRY_PORT/apis/ccompat/v7   (default port 8081)
# Storage is in memory: every start begins with no schemas.

SCHEMA_REGISTRY_START_TIMEOUT="${SCHEMA_REGISTRY_START_TIMEOUT:-90}"

_sr_stamp() { sha256sum "$STACK_SCRIPTS/schema-registry/pom.xml" | cut -d' ' -f1; }

schema_registry_install() {
  local dist; dist="$(dist_dir schema-registry)"
  if [[ -f "$dist/.installed" && "$(cat "$dist/.installed")" == "$(_sr_stamp)" ]]; then
    return 0
  fi
  command -v mvn >/dev/null || fail "schema-registry: mvn (Maven) is needed to install"
  log "building Apicurio Registry 2.4.2 from Maven Central into $dist (first time only)"
  local build="$STACK_DIR/build/schema-registry"
  rm -rf "$build" && mkdir -p "$build/src/main/resources/META-INF"
  cp "$STACK_SCRIPTS/schema-registry/pom.xml" "$build/pom.xml"
  mvn -B -q -Dstyle.color=never -f "$build/pom.xml" \
    org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy \
    -Dartifact=io.apicurio:apicurio-registry-app:2.4.2.Final -DoutputDirectory="$build/app" >&2 \
    || fail "schema-registry: fetching apicurio-registry-app failed"
  python3 - "$build" <<'PY' || fail "schema-registry: cannot unpack the app's configuration"
import sys, zipfile, pathlib
build = pathlib.Path(sys.argv[1])
jar = zipfile.ZipFile(next((build / "app").glob("apicurio-registry-app-*.jar")))
res = build / "src/main/resources"
(res / "application.properties").write_bytes(
    jar.read("application.properties")
    + b"\nquarkus.index-dependency.registry-app.group-id=io.apicurio\n"
    + b"quarkus.index-dependency.registry-app.artifact-id=apicurio-registry-app\n")
(res / "META-INF/web.xml").write_bytes(jar.read("META-INF/web.xml"))
PY
  mvn -B -q -Dstyle.color=never -f "$build/pom.xml" package -DskipTests >&2 \
    || fail "schema-registry: the Quarkus build failed; see the output above"
  rm -rf "$dist" && mkdir -p "$dist"
  mv "$build/target/lib" "$dist/lib"
  mv "$build/target/apicurio-runner-1-runner.jar" "$dist/registry-runner.jar"
  rm -rf "$build"
  _sr_stamp >"$dist/.installed"
}

schema_registry_start() {
  local dist; dist="$(dist_dir schema-registry)"
  # H2 fails concurrent registrations after its 1 s default lock timeout; wait instead.
  start_daemon schema-registry env REGISTRY_DATASOURCE_URL="jdbc:h2:mem:registry_db;LOCK_TIMEOUT=20000" java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dquarkus.http.host="$STACK_BIND" -Dquarkus.http.port="$SCHEMA_REGISTRY_PORT" \
    -jar "$dist/registry-runner.jar"
}

# Healthy means it takes a registration: a fresh registry answers reads at once
# but needs many seconds for its first write (JIT, storage set-up), which would
# otherwise land on the first client's timeout.
schema_registry_health() {
  local base="http://$STACK_BIND:$SCHEMA_REGISTRY_PORT/apis/ccompat/v7"
  http_ok "$base/subjects" || return 1
  curl -fsS --max-time 60 -o /dev/null -X POST -H 'Content-Type: application/vnd.schemaregistry.v1+json' \
    --data '{"schema": "{\"type\":\"record\",\"name\":\"StackProbe\",\"fields\":[{\"name\":\"id\",\"type\":\"string\"}]}"}' \
    "$base/subjects/stack-probe-value/versions"
}
