#!/usr/bin/env bash
# The container image, built from the Dockerfile and run against the native
# stack. scripts/test.sh runs it after the Rust tests (IMAGE=0 skips it); alone,
# it needs the stack running (make stack-up).
#
#   1. An engine: podman, or docker whose daemon answers. When neither is
#      there and this is root on Debian, podman is installed (about 25 s);
#      otherwise the test is skipped with a message.
#   2. Base images made from Debian packages, as no image registry may be
#      reachable, and kept for later runs (remade only when their tag is
#      missing): debian:bookworm-slim (mmdebstrap minbase with the slim
#      image's excludes) and a Rust builder (the same, plus the build tools and
#      the host's rustup toolchain), passed as --build-arg RUST_IMAGE.
#   3. The image, built with VERSION and REVISION labels; with podman the
#      host's cargo registry is lent to the build (an overlay: the build
#      downloads nothing it has, and writes nothing to it).
#   4. `setup` and then `serve` from the image, --read-only (podman: no tmpfs
#      either) with config/docker.toml as compose mounts it, on objects of
#      their own (topics, aliases, database), and the checks: labels and user
#      of the image, /readyz 200, an order indexed into Elasticsearch and read
#      back with an API key (the key made by the image's `hash-key`), 401
#      without it, a 404 problem for an unknown order, the image's health
#      check, uid 10001 in the running container, a root file system that
#      refuses writes, and exit code 0 within the grace after SIGTERM.
#
# Usage: scripts/image-test.sh [bases]     ("bases": step 2 only)
# Environment: IMAGE_TAG (default order-gateway:image-test), REBUILD_BASES=1
# remakes the base images.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "[image-test] $*" >&2; }
die() { log "FAILED: $*"; exit 1; }
now() { date +%s; }

# --- 1. engine --------------------------------------------------------------
engine=""
if command -v podman >/dev/null 2>&1; then
  engine=podman
elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  engine=docker
elif [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
  log "installing podman from Debian (no container engine here)"
  t=$(now)
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    podman buildah mmdebstrap uidmap slirp4netns fuse-overlayfs containernetworking-plugins runc >/dev/null
  log "podman installed in $(( $(now) - t )) s"
  engine=podman
else
  log "skipped: no podman, no docker daemon, and packages cannot be installed here (not root, or no apt-get)"
  exit 0
fi
if [[ $engine == podman && -z ${CONTAINERS_CONF:-} ]]; then
  # What podman needs on these machines: limits that root may not raise
  # otherwise, runc (crun refuses the hybrid cgroups), no systemd.
  mkdir -p .stack/containers
  export CONTAINERS_CONF=$PWD/.stack/containers/containers.conf
  cat >"$CONTAINERS_CONF" <<'EOF'
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
fi
if [[ $engine == docker ]]; then export DOCKER_BUILDKIT=0; fi
# podman 4.3 says at every run and stop of an image with a HEALTHCHECK that it
# cannot reach systemd (for the check's timer): noise here, filtered out.
ce() { "$engine" "$@" 2> >(grep -v 'systemd connection' >&2); }
image_exists() { ce image inspect "$1" >/dev/null 2>&1; }
log "engine: $engine ($(ce --version))"

# --- 2. base images ---------------------------------------------------------
runtime_base=docker.io/library/debian:bookworm-slim
sysroot=$(rustc --print sysroot)
rust_version=$(rustc --version | awk '{print $2}')
builder_base=localhost/order-gateway-rust:$rust_version-bookworm
# The slim image's dpkg excludes (documentation, manual pages, translations):
# written into the image, so that later apt-get installs keep to them too.
slim=(--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
      --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias')

make_base() { # tag, then options for podman import (--change ...) up to "--", then mmdebstrap options
  local tag=$1; shift
  local changes=()
  while [[ $1 != -- ]]; do changes+=("$1"); shift; done; shift
  if image_exists "$tag" && [[ ${REBUILD_BASES:-0} != 1 ]]; then return; fi
  command -v mmdebstrap >/dev/null 2>&1 || {
    [[ $(id -u) -eq 0 ]] || die "mmdebstrap is missing (apt-get install mmdebstrap)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
  }
  local t tar
  t=$(now)
  mkdir -p .stack/images
  tar=.stack/images/base.tar
  log "making $tag from Debian packages"
  # No mirror given: the machine's apt sources. merged-usr: as Debian's images, without the usrmerge package.
  mmdebstrap --quiet --variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    "${slim[@]}" "$@" bookworm "$tar"
  ce import "${changes[@]}" "$tar" "$tag" >/dev/null
  rm -f "$tar"
  log "made $tag in $(( $(now) - t )) s"
}
make_base "$runtime_base" --change 'CMD ["bash"]' --
# The rust image's layout: the toolchain on PATH, CARGO_HOME /usr/local/cargo
# (where the build below lends the host's registry). Only the toolchain's
# bin, lib and libexec: not its 800 MB of documentation.
make_base "$builder_base" \
  --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV CARGO_HOME=/usr/local/cargo' --change 'CMD ["bash"]' -- \
  --include=build-essential,perl,make,pkg-config,zlib1g-dev,ca-certificates \
  --customize-hook="mkdir -p \"\$1/usr/local/rust\" \"\$1/usr/local/cargo\" && cp -a $sysroot/bin $sysroot/lib $sysroot/libexec \"\$1/usr/local/rust/\""
if [[ ${1:-} == bases ]]; then exit 0; fi

# --- 3. the image -----------------------------------------------------------
mkdir -p .stack/logs
tag=${IMAGE_TAG:-order-gateway:image-test}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
# The labels also as --label: buildah's layer cache does not look at the
# values of the ARGs a LABEL uses, so a cached LABEL layer kept an older
# revision; labels given here are set on the final image, cache or not.
build=(build --network host --build-arg RUST_IMAGE="$builder_base"
       --build-arg VERSION="$version" --build-arg REVISION="$revision"
       --label org.opencontainers.image.version="$version"
       --label org.opencontainers.image.revision="$revision")
if [[ $engine == podman ]]; then
  build+=(--pull=never --format docker)
  registry=${CARGO_HOME:-$HOME/.cargo}/registry
  if [[ -d $registry ]]; then build+=(--volume "$registry:/usr/local/cargo/registry:O"); fi
fi
log "building $tag (a cold build compiles every dependency: many minutes on 2 cores)"
t=$(now)
ce "${build[@]}" -t "$tag" . >.stack/logs/image-build.log 2>&1 || { tail -n 40 .stack/logs/image-build.log >&2; die "the image did not build (.stack/logs/image-build.log)"; }
log "built in $(( $(now) - t )) s; $(( $(ce image inspect --format '{{.Size}}' "$tag") / 1000000 )) MB"
# The layer cache stays bounded: the build stage gets a tag (from the cache
# just made), so that it and the compiled dependencies under it are kept; the
# layers of earlier builds, which nothing refers to any more, are removed
# (about 0.3 GB a build, 3 GB after a Cargo.lock change).
ce "${build[@]}" --target build -t localhost/order-gateway-build:cache . >>.stack/logs/image-build.log 2>&1
ce image prune -f --filter label=io.order-gateway.stage=build >/dev/null
ce image prune -f --filter label=org.opencontainers.image.title=order-gateway >/dev/null

# --- 4. run and check -------------------------------------------------------
label() { ce image inspect --format "{{index .Config.Labels \"org.opencontainers.image.$1\"}}" "$tag"; }
[[ $(label version) == "$version" ]] || die "label version is '$(label version)', not $version"
[[ $(label revision) == "$revision" ]] || die "label revision is '$(label revision)', not $revision"
[[ $(label licenses) == Apache-2.0 && $(label title) == order-gateway ]] || die "labels title/licenses missing"
[[ $(ce image inspect --format '{{.Config.User}}' "$tag") == 10001:10001 ]] || die "the image's user is not 10001:10001"

if [[ -z ${ORDER_GATEWAY__ELASTICSEARCH__URL:-} ]]; then eval "$(scripts/stack/env)"; fi
es=$ORDER_GATEWAY__ELASTICSEARCH__URL ch=$ORDER_GATEWAY__CLICKHOUSE__URL
curl -fsS -o /dev/null "$es" || die "Elasticsearch does not answer at $es: start the stack (make stack-up)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
id=imgtest_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
alias=${id//_/-}
port=$(free_port)
name=order-gateway-image-test-$$
cleanup() {
  ce rm -f "$name" >/dev/null 2>&1 || true
  curl -s -o /dev/null -X DELETE "$es/$alias-000001" || true
  curl -s -o /dev/null -X DELETE "$es/_index_template/$alias" || true
  curl -s -o /dev/null --data-binary "DROP DATABASE IF EXISTS \`$id\`" "$ch/" || true
}
trap cleanup EXIT

# The container sees the host's loopback (--network host), so the stack's
# addresses hold as they are; its objects are its own, as in tests/common.
env=(-e ORDER_GATEWAY__KAFKA__BROKERS -e ORDER_GATEWAY__ELASTICSEARCH__URL -e ORDER_GATEWAY__CLICKHOUSE__URL
     -e ORDER_GATEWAY__SCHEMA_REGISTRY__URL
     -e ORDER_GATEWAY__TOPICS__ORDERS="$id.orders" -e ORDER_GATEWAY__TOPICS__FULFILLMENTS="$id.fulfillments"
     -e ORDER_GATEWAY__TOPICS__DEAD_LETTER="$id.dlq" -e ORDER_GATEWAY__TOPICS__CDC=
     -e ORDER_GATEWAY__ELASTICSEARCH__READ_ALIAS="$alias" -e ORDER_GATEWAY__ELASTICSEARCH__WRITE_ALIAS="$alias-write"
     -e ORDER_GATEWAY__CLICKHOUSE__DATABASE="$id"
     -e ORDER_GATEWAY__SERVER__LISTEN="127.0.0.1:$port" -e ORDER_GATEWAY__INGEST__METRICS_LISTEN="127.0.0.1:$(free_port)"
     -e ORDER_GATEWAY_CONFIG=/etc/order-gateway/docker.toml -v "$PWD/config/docker.toml:/etc/order-gateway/docker.toml:ro")
run=(run --network host --read-only)
# podman: no tmpfs either; the health check runs when asked below, not from
# a systemd timer (there is no systemd here to keep one).
if [[ $engine == podman ]]; then run+=(--read-only-tmpfs=false --health-interval=disable); fi

log "setup from the image ($id)"
ce "${run[@]}" --rm "${env[@]}" "$tag" setup >.stack/logs/image-setup.log 2>&1 \
  || { tail -n 20 .stack/logs/image-setup.log >&2; die "setup failed"; }

out=$(ce run --rm --network none "$tag" hash-key)
key=$(sed -n 's/^key  *= //p' <<<"$out")
hash=$(sed -n 's/^hash *= //p' <<<"$out")
[[ $key == ogw_* && $hash == sha256:* ]] || die "hash-key printed no key and hash"
keys="[{name=\"image-test\",hash=\"$hash\",scopes=[\"orders:read\",\"orders:pii\"],tier=\"\"}]"

log "serve from the image on 127.0.0.1:$port"
ce "${run[@]}" -d --name "$name" "${env[@]}" -e ORDER_GATEWAY__AUTH__KEYS="$keys" "$tag" >/dev/null
base=http://127.0.0.1:$port
show_logs() { ce logs "$name" 2>&1 | tail -n 30 >&2; }
deadline=$(( $(now) + 60 ))
until [[ $(curl -s -o /dev/null -w '%{http_code}' "$base/readyz") == 200 ]]; do
  if (( $(now) > deadline )); then curl -s "$base/readyz" >&2 || true; show_logs; die "/readyz did not answer 200 within 60 s"; fi
  sleep 1
done
log "/readyz: 200"

oid=$id-order
ts=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)
view=$(printf '{"order_id":"%s","order":{"order_id":"%s","order_number":"ON-1","customer_id":"cust-image-test","channel":"web","status":"created","currency":"EUR","subtotal":1000,"tax":190,"shipping":0,"discount":0,"total":1190,"lines":[],"email":"someone@example.com","created_at":"%s","updated_at":"%s","version":1},"fulfillments":[]}' "$oid" "$oid" "$ts" "$ts")
curl -fsS -o /dev/null -X PUT -H 'content-type: application/json' --data "$view" "$es/$alias-write/_doc/$oid?refresh=true" \
  || die "could not index an order into $alias-write"
got=$(curl -sS -H "x-api-key: $key" -w '\n%{http_code}' "$base/v1/orders/$oid")
[[ ${got##*$'\n'} == 200 ]] || { echo "$got" >&2; show_logs; die "GET /v1/orders/$oid with the key: not 200"; }
python3 -c 'import json, sys; v = json.loads(sys.argv[1]); assert v["order_id"] == sys.argv[2] and v["order"]["email"], v' \
  "${got%$'\n'*}" "$oid" || die "the order read back is not the one indexed"
log "GET /v1/orders/<id> with the key: 200, the order indexed"
[[ $(curl -s -o /dev/null -w '%{http_code}' "$base/v1/orders/$oid") == 401 ]] || die "GET without a key: not 401"
ct=$(curl -s -o /dev/null -w '%{http_code} %{content_type}' -H "x-api-key: $key" "$base/v1/orders/$id-missing")
[[ $ct == "404 application/problem+json"* ]] || die "an unknown order: '$ct', not 404 problem+json"
log "without a key: 401; an unknown order: 404 problem+json"

if [[ $engine == podman ]]; then
  ce healthcheck run "$name" >/dev/null || die "podman healthcheck run: unhealthy"
else
  deadline=$(( $(now) + 40 ))
  until [[ $(ce inspect --format '{{.State.Health.Status}}' "$name") == healthy ]]; do
    (( $(now) < deadline )) || die "the health check did not report healthy within 40 s"
    sleep 2
  done
fi
log "health check: healthy"

[[ $(ce exec "$name" id -u) == 10001 ]] || die "the process does not run as uid 10001"
[[ $(ce inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$name") == true ]] || die "the root file system is writable"
# As root inside, so that only the read-only mount can refuse.
for dir in / /tmp /var/tmp /run /etc/order-gateway; do
  if ce exec --user 0 "$name" touch "$dir/.image-test" 2>/dev/null; then die "$dir is writable in the container"; fi
done
log "uid 10001; read-only root file system, /tmp included"

t=$(now)
ce stop -t 20 "$name" >/dev/null
took=$(( $(now) - t ))
code=$(ce inspect --format '{{.State.ExitCode}}' "$name")
[[ $code == 0 ]] || { show_logs; die "exit code $code after SIGTERM (137: killed at the end of the grace)"; }
log "SIGTERM: exit code 0 after $took s (shutdown_delay 5 s, then draining)"
log "ok"
