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
#     holds a key
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
mkdir -p "$work/config"
cp Dockerfile "$work/"
cp config/docker.toml "$work/config/"
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
import json, sys

text = open(sys.argv[1]).read()
try:
    doc = json.loads(text)
except ValueError:
    import yaml  # docker-compose 1.29 prints YAML only; python3-yaml comes with it
    doc = yaml.safe_load(text)

problems = []
services = doc["services"]
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

for name in ("setup", "serve", "ingest"):
    svc = services[name]
    if svc.get("read_only") is not True:
        problems.append(f"{name}: not read_only")
    if "ALL" not in (svc.get("cap_drop") or []):
        problems.append(f"{name}: keeps its capabilities (cap_drop: [ALL])")
    if svc.get("user"):
        problems.append(f"{name}: user overridden ({svc['user']}); the image runs as 10001")
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    if name != "serve" and "ORDER_GATEWAY__AUTH__KEYS" in env:
        problems.append(f"{name}: has API keys, which only serve needs")
keys = (services["serve"].get("environment") or {}).get("ORDER_GATEWAY__AUTH__KEYS", "")
if "sha256:0000" not in str(keys):
    problems.append("serve: ORDER_GATEWAY__AUTH__KEYS does not come from config/docker.keys.env")

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
log "ok: valid; ports on 127.0.0.1 only, ingest's metrics internal, read-only without capabilities, keys from the ignored file"
