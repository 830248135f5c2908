#!/usr/bin/env bash
# Checks the tools the build and the native stack need; installs the missing
# Debian packages when running as root. Rust itself must come from rustup.
set -euo pipefail

missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need java openjdk-17-jdk-headless
need javac openjdk-17-jdk-headless
need mvn maven
need npm npm
need python3 python3
need cc gcc
need curl curl
need setsid util-linux
need openssl openssl
# The integration tests' TLS terminator (tests/common/tls_proxy.rs); in /usr/sbin,
# which is not always on PATH.
[[ -x /usr/sbin/nginx ]] || command -v nginx >/dev/null 2>&1 || missing+=(nginx)
# The load balancer in front of two replicas in tests/fault_drain.rs; also in /usr/sbin.
[[ -x /usr/sbin/haproxy ]] || command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
# The stack's PostgreSQL (scripts/stack/components/postgres.sh): the server's initdb and
# pg_ctl live in /usr/lib/postgresql/<major>/bin, never on PATH; psql comes with it.
compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null && compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null \
  || missing+=(postgresql)
need psql postgresql-client

if (( ${#missing[@]} )); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "[prereqs] installing: ${missing[*]}" >&2
    # Debian starts a package's service on install: keep nginx, haproxy and PostgreSQL's
    # own cluster from taking ports system-wide when nothing prevents that already.
    policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      policy=/usr/sbin/policy-rc.d; printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    if [[ -n "$policy" ]]; then rm -f "$policy"; fi
  else
    echo "[prereqs] missing tools; install these packages: ${missing[*]}" >&2
    exit 1
  fi
fi

if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  else
    echo "[prereqs] python3 cannot create virtual environments; install python3-venv" >&2
    exit 1
  fi
fi

java_major=$(java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print v[1]}')
if (( java_major < 17 )); then
  echo "[prereqs] Java 17 or newer is needed (found $java_major): Kafka 4 and Elasticsearch 8 require it" >&2
  exit 1
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "[prereqs] cargo not found: install Rust with rustup (https://rustup.rs), then run again" >&2
  exit 1
fi

# Jaeger and promtool are built from the Go module proxy (scripts/stack/components/).
if ! command -v go >/dev/null 2>&1 && [[ ! -x /usr/local/go/bin/go ]]; then
  echo "[prereqs] Go not found (on PATH or /usr/local/go): the stack builds Jaeger and promtool with it; install Go 1.24 or newer (https://go.dev/dl), then run again" >&2
  exit 1
fi
