#!/usr/bin/env bash
# `make manifests` (and a step of `make test`, MANIFESTS=0 skips it there):
# offline checks of the Kubernetes manifests under deploy/kubernetes/.
#
#   scripts/validate-manifests.sh
#
# 1. Renders the kustomize base and the Istio example with `kubectl kustomize`
#    when kubectl is there, else with kustomize $KUSTOMIZE_VERSION built once from
#    the Go module proxy into .stack/dist/kustomize-<version>/.
# 2. Runs scripts/validate_manifests.py in a venv with kubernetes-validate
#    $KUBERNETES_VALIDATE_VERSION (PyPI, pinned; its Kubernetes schemas ship inside
#    the package), installed once into .stack/dist/kubernetes-validate-venv:
#    every Kubernetes object against the API schemas of $MANIFESTS_K8S_VERSIONS,
#    strict; the Istio objects against a structural schema written there; the
#    objects against each other and against the gateway's configuration; then a
#    self-test that breaks the manifests in known ways and expects each caught.
#    The docstring of that file says what is and is not checked.
# 3. When target/debug/order-gateway (or target/release/) is newer than the
#    sources, `order-gateway check-config` on gateway.toml (secrets replaced by
#    dummy files): the binary itself accepts the file, without warnings.
#
# Nothing is contacted but the package registries, and only to install what
# is missing. Exits non-zero with the errors listed on any failure.
#
# Environment: MANIFESTS_K8S_VERSIONS (default 1.30,1.37), MANIFESTS_RENDERER
# (auto, kubectl or kustomize), KUSTOMIZE_VERSION, KUBERNETES_VALIDATE_VERSION,
# MANIFESTS_GATEWAY_BIN (the binary for step 3; "none" skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/stack/lib.sh

say() { printf '[manifests] %s\n' "$*" >&2; }
fail() { printf '[manifests] error: %s\n' "$*" >&2; exit 1; }

KUBERNETES_VALIDATE_VERSION="${KUBERNETES_VALIDATE_VERSION:-1.37.0}"
# v5.8.2 and later need Go 1.26 and 1.27; v5.8.1 builds with Go 1.24 or newer.
KUSTOMIZE_VERSION="${KUSTOMIZE_VERSION:-v5.8.1}"
K8S_VERSIONS="${MANIFESTS_K8S_VERSIONS:-1.30,1.37}"
renderer="${MANIFESTS_RENDERER:-auto}"
deploy=deploy/kubernetes
started=$SECONDS

# --- 1. render ---------------------------------------------------------------
kustomize_bin=""
install_kustomize() {
  local dir; dir="$(dist_dir "kustomize-$KUSTOMIZE_VERSION")"
  kustomize_bin="$dir/kustomize"
  if [[ -x "$kustomize_bin" ]] && "$kustomize_bin" version >/dev/null 2>&1; then return 0; fi
  local go; go="$(command -v go || true)"
  [[ -n "$go" ]] || go=/usr/local/go/bin/go
  [[ -x "$go" ]] || fail "no kubectl to render with, and no Go to build kustomize $KUSTOMIZE_VERSION (install either)"
  say "building kustomize $KUSTOMIZE_VERSION from the Go module proxy into $dir (once; about a minute)"
  mkdir -p "$dir"
  GOBIN="$dir" GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0 \
    "$go" install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >&2 \
    || fail "go install sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION failed ($("$go" version))"
  "$kustomize_bin" version >/dev/null 2>&1 || fail "$kustomize_bin does not run"
}
case "$renderer" in
  auto)
    if command -v kubectl >/dev/null 2>&1 && kubectl kustomize --help >/dev/null 2>&1; then
      renderer=kubectl
    else
      renderer=kustomize
    fi ;;
  kubectl|kustomize) ;;
  *) fail "MANIFESTS_RENDERER=$renderer: auto, kubectl or kustomize" ;;
esac
[[ "$renderer" == kustomize ]] && install_kustomize

tmp="$(mktemp -d "${TMPDIR:-/tmp}/order-gateway-manifests.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

rendered=()
render() { # name dir
  local out="$tmp/$1.yaml"
  if [[ "$renderer" == kubectl ]]; then
    kubectl kustomize "$2" >"$out" 2>"$tmp/$1.err" || { cat "$tmp/$1.err" >&2; fail "kubectl kustomize $2 failed"; }
  else
    "$kustomize_bin" build "$2" >"$out" 2>"$tmp/$1.err" || { cat "$tmp/$1.err" >&2; fail "kustomize build $2 failed"; }
  fi
  rendered+=("$1=$out")
}
render base "$deploy/base"
render istio "$deploy/examples/istio"
if [[ "$renderer" == kubectl ]]; then
  say "rendered base and examples/istio with kubectl kustomize ($(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: //p'))"
else
  say "rendered base and examples/istio with kustomize $KUSTOMIZE_VERSION"
fi

# --- 2. validate ---------------------------------------------------------------
venv="$(dist_dir kubernetes-validate-venv)"
py="$venv/bin/python"
if ! [[ -x "$py" && "$(cat "$venv/.version" 2>/dev/null)" == "$KUBERNETES_VALIDATE_VERSION" ]] \
    || ! "$py" -c 'import kubernetes_validate' >/dev/null 2>&1; then
  say "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION from PyPI into $venv (once)"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv" || fail "python3 -m venv failed (is python3-venv installed?)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" >&2 \
    || fail "pip install kubernetes-validate==$KUBERNETES_VALIDATE_VERSION failed"
  printf '%s\n' "$KUBERNETES_VALIDATE_VERSION" >"$venv/.version"
fi
"$py" scripts/validate_manifests.py --self-test \
  --k8s-versions "$K8S_VERSIONS" \
  --config "$deploy/base/gateway.toml" --defaults config/default.toml --cargo Cargo.toml \
  --secret "$deploy/secret.example.yaml" "${rendered[@]}" \
  || fail "the manifests under $deploy do not pass (errors above)"

# --- 3. the binary reads the configuration ------------------------------------------
bin="${MANIFESTS_GATEWAY_BIN:-}"
if [[ -z "$bin" ]]; then
  for b in target/debug/order-gateway target/release/order-gateway; do
    if [[ -x "$b" ]] && [[ -z "$(find src config/default.toml Cargo.toml Cargo.lock -newer "$b" -print -quit)" ]]; then
      bin="$b"; break
    fi
  done
fi
if [[ -z "$bin" ]]; then
  say "check-config skipped: no target/*/order-gateway newer than the sources (make build, or MANIFESTS_GATEWAY_BIN=...)"
elif [[ "$bin" != none ]]; then
  [[ -x "$bin" ]] || fail "MANIFESTS_GATEWAY_BIN=$bin is not an executable"
  secrets="$tmp/secrets"
  mkdir -p "$secrets"
  sed "s#/var/run/secrets/order-gateway/#$secrets/#g" "$deploy/base/gateway.toml" >"$tmp/gateway.toml"
  for f in $(grep -v '^[[:space:]]*#' "$deploy/base/gateway.toml" \
             | grep -o '"/var/run/secrets/order-gateway/[A-Za-z0-9._-]\+"' | tr -d '"' | sort -u); do
    printf 'dummy-%s\n' "${f##*/}" >"$secrets/${f##*/}"
  done
  # A clean environment: only the file, and what the Deployment sets.
  if ! env -i PATH="$PATH" HOME="${HOME:-/nonexistent}" \
      ORDER_GATEWAY__SERVER__LISTEN=0.0.0.0:8080 ORDER_GATEWAY__API__CURSOR_SECRET=dummy-cursor-secret \
      "$bin" --config "$tmp/gateway.toml" check-config >"$tmp/check.out" 2>"$tmp/check.err"; then
    cat "$tmp/check.err" >&2
    fail "$bin check-config refuses $deploy/base/gateway.toml"
  fi
  if [[ -s "$tmp/check.err" ]]; then
    cat "$tmp/check.err" >&2
    fail "$bin check-config warns about $deploy/base/gateway.toml"
  fi
  say "$bin check-config accepts gateway.toml (no warnings)"
fi
say "ok in $((SECONDS - started))s"
