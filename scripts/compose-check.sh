#!/usr/bin/env bash
# docker-compose.yml, checked without running it (its official images cannot
# be pulled on these machines). A compose tool validates it against the
# Compose file schema and resolves it (anchors, env_file, defaults); the
# resolved form is then checked for what keeps the stack safe by default:
#   - every published port is bound to 127.0.0.1, and ingest publishes none
#   - setup, serve and ingest run read-only, without capabilities, as the
#     image's user
#   - serve's API keys come from config/docker.keys.env only, which git and
#     the image's build context ignore; no committed compose or config file
#     holds a key, and no other service has keys
#   - every bind mount is read-only and its source exists
# and for change data capture, what keeps it consistent with the native stack
# (scripts/stack/lib.sh, components/postgres.sh, components/connect.sh) and
# with itself:
#   - postgres: postgres:15 with the native wal_level, max_replication_slots
#     and max_wal_senders; the legacy roles' and database's names and
#     passwords as lib.sh's defaults; the init script and schemas/legacy
#     mounted; a pg_isready health check; its data on a named volume
#   - connect: Kafka at the gateway's brokers; group and topics as natively;
#     waits for healthy kafka and postgres; a health check
#   - connector: runs read-only, without capabilities, after a healthy connect;
#     deploy/compose/deploy-connector.sh renders connectors/legacy-orders.json
#     for its environment exactly as `scripts/connector.sh render` does; that
#     config reaches the postgres service with its CDC user, password and
#     database; its topics (<topic.prefix>.<table>) are the gateway's
#     topics.cdc and topics.cdc_lines in setup, serve and ingest
# The tool: `docker compose` (v2) when present, else Debian's docker-compose
# 1.29 (installed when missing, as root on Debian: about 15 s), which
# predates the top-level `name:` (2022): its copy of the file goes without
# that line. Run by scripts/test.sh beside scripts/image-test.sh (IMAGE=0
# skips both); skipped with a message when no tool can be had.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "[compose-check] $*" >&2; }

if docker compose version >/dev/null 2>&1; then
  compose=(docker compose) format=(--format json)
else
  if ! command -v docker-compose >/dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
      log "installing Debian's docker-compose"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
    else
      log "skipped: neither \`docker compose\` nor docker-compose is installed (apt-get install docker-compose)"
      exit 0
    fi
  fi
  compose=(docker-compose) format=()
  # A standalone docker-compose may be v2 too.
  if docker-compose version 2>/dev/null | grep -q 'version v\?2'; then format=(--format json); fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/config" "$work/deploy" "$work/connectors" "$work/schemas"
cp Dockerfile "$work/"
cp config/docker.toml "$work/config/"
# What the compose file bind-mounts, so that the resolved sources exist.
cp -R deploy/compose "$work/deploy/"
cp connectors/legacy-orders.json "$work/connectors/"
cp -R schemas/legacy "$work/schemas/"
if (( ${#format[@]} == 0 )); then
  sed '/^name:/d' docker-compose.yml >"$work/docker-compose.yml"
else
  cp docker-compose.yml "$work/"
fi
# A stand-in for the git-ignored keys file, as scripts/docker-keys.sh writes it.
printf '%s\n' '# stand-in' \
  'ORDER_GATEWAY__AUTH__KEYS=[{name="compose",hash="sha256:0000000000000000000000000000000000000000000000000000000000000000",scopes=["orders:read"],tier=""}]' \
  >"$work/config/docker.keys.env"

log "validating docker-compose.yml with $("${compose[@]}" version --short 2>/dev/null || "${compose[@]}" version | head -n 1)"
(cd "$work" && "${compose[@]}" -f docker-compose.yml config "${format[@]}") >"$work/resolved.yml"

python3 - "$work/resolved.yml" <<'EOF'
import json, os, re, subprocess, sys

text = open(sys.argv[1]).read()
try:
    doc = json.loads(text)
except ValueError:
    import yaml  # docker-compose 1.29 prints YAML only; python3-yaml comes with it
    doc = yaml.safe_load(text)

problems = []
services = doc["services"]

def env_of(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}

def mounts_of(svc):
    """(type, source, target, read_only) of each volume, short (1.29) or long (v2) form."""
    out = []
    for v in svc.get("volumes") or []:
        if isinstance(v, dict):
            out.append((v.get("type"), v.get("source"), v.get("target"), bool(v.get("read_only"))))
        else:
            parts = str(v).split(":")
            src, tgt = parts[0], parts[1] if len(parts) > 1 else parts[0]
            mode = parts[2] if len(parts) > 2 else "rw"
            kind = "bind" if src.startswith(("/", ".", "~")) else "volume"
            out.append((kind, src, tgt, "ro" in mode.split(",")))
    return out

def depends(svc):
    d = svc.get("depends_on") or {}
    if isinstance(d, list):
        return {name: "service_started" for name in d}
    return {name: (c or {}).get("condition", "service_started") for name, c in d.items()}

def health_test(svc):
    hc = svc.get("healthcheck") or {}
    if hc.get("disable"):
        return ""
    t = hc.get("test") or ""
    return " ".join(t) if isinstance(t, list) else str(t)

def native_default(path, var):
    """VAR's default in a stack script's VAR="${VAR:-default}" line."""
    m = re.search(r'^%s="\$\{%s:-([^}]*)\}"' % (var, var), open(path).read(), re.M)
    if not m:
        problems.append(f"{path}: no {var}=\"${{{var}:-...}}\" line to compare the compose file with")
        return None
    return m.group(1)
for name, svc in services.items():
    for p in svc.get("ports") or []:
        if isinstance(p, dict):
            host_ip = p.get("host_ip")
        else:  # "127.0.0.1:8080:8080" or "8080:8080" (1.29 keeps the short form)
            parts = str(p).split(":")
            host_ip = parts[0] if len(parts) == 3 else None
        if host_ip != "127.0.0.1":
            problems.append(f"{name}: port {p} is published on every interface, not 127.0.0.1 only")
if services["ingest"].get("ports"):
    problems.append("ingest: publishes its metrics port; it is meant for the compose network only")

for name in ("setup", "serve", "ingest", "connector"):
    svc = services[name]
    if svc.get("read_only") is not True:
        problems.append(f"{name}: not read_only")
    if "ALL" not in (svc.get("cap_drop") or []):
        problems.append(f"{name}: keeps its capabilities (cap_drop: [ALL])")
    if svc.get("user"):
        problems.append(f"{name}: user overridden ({svc['user']}); the image's own user runs it (10001 for the gateway)")
for name, svc in services.items():
    if name != "serve" and "ORDER_GATEWAY__AUTH__KEYS" in env_of(svc):
        problems.append(f"{name}: has API keys, which only serve needs")
    for kind, src, tgt, ro in mounts_of(svc):
        if kind == "bind":
            if not ro:
                problems.append(f"{name}: bind mount {tgt} is writable (:ro)")
            if not os.path.exists(src):
                problems.append(f"{name}: bind mount source {src} does not exist")
keys = env_of(services["serve"]).get("ORDER_GATEWAY__AUTH__KEYS", "")
if "sha256:0000" not in keys:
    problems.append("serve: ORDER_GATEWAY__AUTH__KEYS does not come from config/docker.keys.env")

# ---- change data capture: postgres, connect, connector ----
lib = "scripts/stack/lib.sh"
pg_native = "scripts/stack/components/postgres.sh"
connect_native = "scripts/stack/components/connect.sh"
pg, connect, connector = services["postgres"], services["connect"], services["connector"]
pg_env, connect_env, connector_env = env_of(pg), env_of(connect), env_of(connector)

if pg.get("image") != "postgres:15":
    problems.append(f"postgres: image {pg.get('image')}, not the official postgres:15")
cmd = pg.get("command") or []
cmd = cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]
settings = dict(c.split("=", 1) for c in cmd if "=" in c)
native_settings = dict(re.findall(r"-c (wal_level|max_replication_slots|max_wal_senders)=(\S+)", open(pg_native).read()))
for key in ("wal_level", "max_replication_slots", "max_wal_senders"):
    if key not in native_settings:
        problems.append(f"{pg_native}: no -c {key}=... to compare the compose file with")
    elif settings.get(key) != native_settings[key]:
        problems.append(f"postgres: {key}={settings.get(key)} in its command, natively {native_settings[key]}")
for var, native in (("LEGACY_USER", "POSTGRES_USER"), ("LEGACY_PASSWORD", "POSTGRES_PASSWORD"),
                    ("LEGACY_DB", "POSTGRES_DB"), ("CDC_USER", "POSTGRES_CDC_USER"),
                    ("CDC_PASSWORD", "POSTGRES_CDC_PASSWORD")):
    want = native_default(lib, native)
    if want is not None and pg_env.get(var) != want:
        problems.append(f"postgres: {var}={pg_env.get(var)!r}, natively {native}={want!r} ({lib})")
pg_mounts = mounts_of(pg)
if not any(k == "bind" and t.startswith("/docker-entrypoint-initdb.d/") and s.endswith("/deploy/compose/postgres-init.sh")
           for k, s, t, _ in pg_mounts):
    problems.append("postgres: deploy/compose/postgres-init.sh is not mounted in /docker-entrypoint-initdb.d/")
schemas_at = pg_env.get("LEGACY_SCHEMAS", "/legacy-schemas")
if not any(k == "bind" and t == schemas_at and s.rstrip("/").endswith("/schemas/legacy") for k, s, t, _ in pg_mounts):
    problems.append(f"postgres: schemas/legacy is not mounted at {schemas_at} (LEGACY_SCHEMAS)")
if not any(k == "volume" and t == "/var/lib/postgresql/data" for k, s, t, _ in pg_mounts):
    problems.append("postgres: /var/lib/postgresql/data is not on a named volume")
if "pg_isready" not in health_test(pg):
    problems.append("postgres: no pg_isready health check")

gateway_brokers = env_of(services["setup"]).get("ORDER_GATEWAY__KAFKA__BROKERS")
if connect_env.get("BOOTSTRAP_SERVERS") != gateway_brokers:
    problems.append(f"connect: BOOTSTRAP_SERVERS={connect_env.get('BOOTSTRAP_SERVERS')}, the gateway's brokers are {gateway_brokers}")
native_connect = open(connect_native).read()
want_group = native_default(connect_native, "CONNECT_GROUP_ID")
if want_group is not None and connect_env.get("GROUP_ID") != want_group:
    problems.append(f"connect: GROUP_ID={connect_env.get('GROUP_ID')}, natively {want_group}")
for var, prop in (("CONFIG_STORAGE_TOPIC", "config.storage.topic"), ("OFFSET_STORAGE_TOPIC", "offset.storage.topic"),
                  ("STATUS_STORAGE_TOPIC", "status.storage.topic")):
    m = re.search(r"^%s=(\S+)$" % re.escape(prop), native_connect, re.M)
    if not m:
        problems.append(f"{connect_native}: no {prop}= line to compare the compose file with")
    elif connect_env.get(var) != m.group(1):
        problems.append(f"connect: {var}={connect_env.get(var)}, natively {prop}={m.group(1)}")
for dep in ("kafka", "postgres"):
    if depends(connect).get(dep) != "service_healthy":
        problems.append(f"connect: does not wait for a healthy {dep}")
if not health_test(connect):
    problems.append("connect: no health check")

if depends(connector).get("connect") != "service_healthy":
    problems.append("connector: does not wait for a healthy connect")
if str(connector.get("restart", "no")) != "no":
    problems.append("connector: a one-shot, restart must be \"no\"")
by_target = {t: s for k, s, t, _ in mounts_of(connector) if k == "bind"}
script = by_target.get("/connector/deploy-connector.sh")
config_file = by_target.get(connector_env.get("CONNECTOR_CONFIG", "/connector/legacy-orders.json"))
if not (script and script.endswith("/deploy/compose/deploy-connector.sh")):
    problems.append("connector: deploy/compose/deploy-connector.sh is not mounted at /connector/deploy-connector.sh")
elif not (config_file and config_file.endswith("/connectors/legacy-orders.json")):
    problems.append("connector: connectors/legacy-orders.json is not mounted at its CONNECTOR_CONFIG")
else:
    base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    run_env = {**base_env, **connector_env, "CONNECTOR_CONFIG": config_file}
    mine = subprocess.run(["bash", script, "render"], env=run_env, capture_output=True, text=True)
    theirs = subprocess.run(["scripts/connector.sh", "render", "connectors/legacy-orders.json"],
                            env=dict(base_env, **connector_env), capture_output=True, text=True)
    if mine.returncode != 0 or theirs.returncode != 0:
        problems.append("connector: rendering connectors/legacy-orders.json with its environment failed: "
                        + (mine.stderr + theirs.stderr).strip())
    else:
        config = json.loads(mine.stdout)
        want = json.loads(theirs.stdout)["config"]
        want.pop("name", None)
        if config != want:
            diff = sorted(k for k in set(config) | set(want) if config.get(k) != want.get(k))
            problems.append(f"connector: deploy-connector.sh renders {diff} unlike scripts/connector.sh render")
        host, port = config.get("database.hostname"), config.get("database.port")
        if host not in services:
            problems.append(f"connector: database.hostname {host} is no service of the compose file")
        elif host == "postgres" and port != "5432":
            problems.append(f"connector: database.port {port}; postgres listens on 5432 in the compose network")
        for key, var in (("database.user", "CDC_USER"), ("database.password", "CDC_PASSWORD"), ("database.dbname", "LEGACY_DB")):
            if config.get(key) != pg_env.get(var):
                problems.append(f"connector: {key}={config.get(key)!r}, postgres makes {var}={pg_env.get(var)!r}")
        prefix = config.get("topic.prefix", "")
        tables = [t.strip() for t in config.get("table.include.list", "").split(",") if t.strip()]
        want_topics = {"ORDER_GATEWAY__TOPICS__CDC": f"{prefix}.legacy.orders",
                       "ORDER_GATEWAY__TOPICS__CDC_LINES": f"{prefix}.legacy.order_lines"}
        for t in want_topics.values():
            if t.split(".", 1)[1] not in tables:
                problems.append(f"connector: table.include.list {tables} lacks {t.split('.', 1)[1]} (topic {t})")
        for name in ("setup", "serve", "ingest"):
            env = env_of(services[name])
            for var, topic in want_topics.items():
                if env.get(var) != topic:
                    problems.append(f"{name}: {var}={env.get(var)!r}, the connector writes {topic!r}")

for p in problems:
    print(f"[compose-check] {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
EOF

fail=0
if grep -v '^[[:space:]]*#' config/docker.toml | grep -Eq 'auth\.keys|hash[[:space:]]*=|AUTH__KEYS'; then
  log "config/docker.toml holds an API key: keys belong in config/docker.keys.env (make docker-keys)"; fail=1
fi
if grep -v '^[[:space:]]*#' docker-compose.yml | grep -q 'AUTH__KEYS'; then
  log "docker-compose.yml sets API keys itself"; fail=1
fi
if ! git check-ignore -q config/docker.keys.env 2>/dev/null; then
  log ".gitignore does not ignore config/docker.keys.env"; fail=1
fi
if ! grep -qx 'config/\*\.keys\.env' .dockerignore; then
  log ".dockerignore lets config/docker.keys.env into the build context"; fail=1
fi
(( fail == 0 )) || exit 1
log "ok: valid; ports on 127.0.0.1 only, ingest's metrics internal, read-only without capabilities, keys from the ignored file; postgres, connect and connector as the native stack, the connector's topics the gateway's"
