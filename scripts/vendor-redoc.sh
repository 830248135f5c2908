#!/usr/bin/env bash
# ReDoc, vendored: /redoc serves assets/redoc/redoc.standalone.js from the
# binary (include_bytes! in src/api/openapi.rs), so the page loads nothing
# from a CDN. The file is the npm package `redoc`'s bundles/redoc.standalone.js,
# pinned by version (assets/redoc/VERSION) and sha256 (assets/redoc/SHA256SUMS).
#
#   scripts/vendor-redoc.sh            fetch the pinned version again and check
#                                      that it and the committed copy both match
#                                      the pinned sha256 (exit 1 if not)
#   scripts/vendor-redoc.sh 2.5.5      vendor that version: replace the files,
#                                      rewrite VERSION and SHA256SUMS; then
#                                      `cargo test --lib openapi`, look at /redoc, commit
#
# npm pack checks the tarball against the registry's sha512 integrity; the
# sha256 pins the file across registries and mirrors. Only registry.npmjs.org
# (or the npm registry configured) is needed, no GitHub or CDN.
#
# Stay on 2.x: redoc 3.x (an ES module) sends telemetry to otel.cloud.redocly.com
# unless told not to, and loads icons from cdn.redocly.com.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "[vendor-redoc] $*" >&2; }
die() { log "$*"; exit 1; }

root=$PWD
dir=assets/redoc
files=(redoc.standalone.js redoc.standalone.js.LICENSE.txt)
pinned=$(cat "$dir/VERSION" 2>/dev/null || true)
version=${1:-$pinned}
[[ -n $version ]] || die "no version given and $dir/VERSION is missing"
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "version must be an exact release such as 2.5.4, got \"$version\""
command -v npm >/dev/null || die "npm is needed (Debian: apt-get install npm; or scripts/prereqs.sh)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log "fetching redoc@$version"
tarball=$(cd "$tmp" && npm pack --silent "redoc@$version") || die "npm pack redoc@$version failed"
tar -xzf "$tmp/$tarball" -C "$tmp"
for f in "${files[@]}"; do
  [[ -f $tmp/package/bundles/$f ]] || die "redoc@$version has no bundles/$f"
done
[[ -f $tmp/package/LICENSE ]] || die "redoc@$version has no LICENSE"
license=$(node -p 'require(process.argv[1]).license' "$tmp/package/package.json" 2>/dev/null \
  || sed -n 's/^ *"license": *"\([^"]*\)".*/\1/p' "$tmp/package/package.json")
[[ $license == MIT ]] || die "redoc@$version is licensed \"$license\", not MIT: check before vendoring"
fetched=$(cd "$tmp/package/bundles" && sha256sum redoc.standalone.js)

if [[ $# -eq 0 ]]; then
  # Check mode: the registry's file, the committed file and the pin agree.
  (cd "$tmp/package/bundles" && sha256sum --quiet -c "$root/$dir/SHA256SUMS") \
    || die "redoc@$version from the registry does not match $dir/SHA256SUMS (pinned: $(cat "$dir/SHA256SUMS"); fetched: $fetched)"
  (cd "$dir" && sha256sum --quiet -c SHA256SUMS) \
    || die "the committed $dir/redoc.standalone.js does not match $dir/SHA256SUMS: run scripts/vendor-redoc.sh $version to restore it"
  log "redoc@$version: the committed copy matches the registry ($fetched)"
  exit 0
fi

cp "$tmp/package/bundles/redoc.standalone.js" "$tmp/package/bundles/redoc.standalone.js.LICENSE.txt" "$dir/"
cp "$tmp/package/LICENSE" "$dir/LICENSE"
echo "$version" >"$dir/VERSION"
echo "$fetched" >"$dir/SHA256SUMS"
log "vendored redoc@$version (was ${pinned:-none}): $fetched"
log "next: cargo test --lib api::openapi, open /redoc, then commit $dir"
