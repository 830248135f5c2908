#!/usr/bin/env bash
# `make docker-keys`: makes config/docker.keys.env, the API keys of the compose
# stack's `serve` (docker-compose.yml reads it as env_file), unless it exists.
# The file holds the keys' hashes only, as ORDER_GATEWAY__AUTH__KEYS (a TOML
# inline array, which wins over config/docker.toml); the new key is printed
# once, here, and kept nowhere. The file is git-ignored and left out of the
# image's build context (.dockerignore).
#
# The key comes from `order-gateway hash-key`: the local binary when one is
# built, else the image (ENGINE run --rm IMAGE hash-key).
#   KEY_NAME    who holds it (logs, metrics, rate limits), default "compose"
#   KEY_SCOPES  comma-separated, default orders:read,orders:pii,analytics:read
#               (add admin for /admin/*)
#   ENGINE, GATEWAY_IMAGE   container engine and image, default docker and order-gateway:dev
set -euo pipefail
cd "$(dirname "$0")/.."

file=config/docker.keys.env
if [[ -e $file ]]; then
  echo "[docker-keys] $file exists: keeping it (delete it, or add a key as its comment says)" >&2
  exit 0
fi
name=${KEY_NAME:-compose}
IFS=, read -ra scopes <<<"${KEY_SCOPES:-orders:read,orders:pii,analytics:read}"

bin=""
for b in target/release/order-gateway target/debug/order-gateway; do
  if [[ -x $b ]]; then bin=$b; break; fi
done
if [[ -n $bin ]]; then
  out=$("$bin" hash-key)
else
  engine=${ENGINE:-docker} image=${GATEWAY_IMAGE:-order-gateway:dev}
  out=$("$engine" run --rm --network none "$image" hash-key) || {
    echo "[docker-keys] no local binary, and $engine could not run $image hash-key: make docker-build first" >&2
    exit 1
  }
fi
key=$(sed -n 's/^key  *= //p' <<<"$out")
hash=$(sed -n 's/^hash *= //p' <<<"$out")
[[ $key == ogw_* && $hash == sha256:* ]] || { echo "[docker-keys] unexpected hash-key output" >&2; exit 1; }

list=$(printf '"%s",' "${scopes[@]}")
umask 077
cat >"$file" <<EOF
# API keys of the compose stack's serve (docker-compose.yml, env_file), made by
# \`make docker-keys\`. Not committed. Hashes only: the key was printed once.
# Another key: \`order-gateway hash-key\` prints a key and its hash; append
# ,{name="...",hash="sha256:...",scopes=["orders:read"]} inside the brackets.
# Scopes: orders:read, orders:pii, analytics:read, admin. Tier "" = standard.
ORDER_GATEWAY__AUTH__KEYS=[{name="$name",hash="$hash",scopes=[${list%,}],tier=""}]
EOF
cat >&2 <<EOF
[docker-keys] wrote $file: key "$name" with scopes ${scopes[*]}
[docker-keys] the key (shown only now; keep it somewhere safe):

    $key

  curl -H 'x-api-key: $key' http://127.0.0.1:8080/v1/orders/<id>
EOF
