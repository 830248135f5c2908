# Multi-stage build: a Rust builder, then a small Debian runtime as a non-root user.
#
#   docker build -t order-gateway:0.1.0 .      (or: make docker-build)
#
# Build arguments:
#   RUST_IMAGE     builder base, default rust:1.95-bookworm. Cargo.lock's newest
#                  crates need rustc 1.89 (clickhouse 0.15, uuid 1.29); 1.95 is
#                  the toolchain the project is built and tested with.
#   RUNTIME_IMAGE  runtime base, default debian:bookworm-slim.
#   VERSION, REVISION, SOURCE   the OCI labels below (make docker-build sets
#                  them from Cargo.toml and git).
# Builder and runtime must be the same Debian release (bookworm), so that the
# binary's glibc is the one it runs on.
#
# The runtime needs no writable path: the container runs with a read-only root
# file system (docker run --read-only; read_only: true in docker-compose.yml).
ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
# Marks the build stage's layers, so that scripts/image-test.sh can remove
# those of earlier builds (podman image prune --filter label=...).
LABEL io.order-gateway.stage=build
# rdkafka (features tokio, libz, ssl-vendored; no cmake feature) builds the
# bundled librdkafka with its configure script (bash) and make and a C
# compiler, and OpenSSL from source (perl, make) linked in statically, for
# Kafka's SSL and SCRAM; libz-sys links the system zlib found through
# pkg-config. The HTTP backends use rustls (no OpenSSL). The rust image has all
# of these, so nothing is installed there; a slimmer base gets them here, or
# fails at this line rather than deep in cargo.
RUN if command -v cc && command -v make && command -v perl && command -v pkg-config \
      && [ -e /usr/include/zlib.h ]; then :; \
    else apt-get update && apt-get install -y --no-install-recommends \
        build-essential perl make pkg-config zlib1g-dev \
      && rm -rf /var/lib/apt/lists/*; fi
WORKDIR /src
# Dependencies first, in their own layer, so that source edits do not rebuild
# them: the real manifest over stub targets. Cargo refuses a manifest whose
# targets' files are missing, so every [lib], [[bin]], [[bench]], [[test]] and
# [[example]] of Cargo.toml gets a stub at its path (given, or cargo's default).
COPY Cargo.toml Cargo.lock ./
RUN awk -F'"' ' \
      function flush() { \
        if (kind == "") return; \
        if (path == "" && kind == "lib") path = "src/lib.rs"; \
        else if (path == "" && kind == "bin") path = (name == package) ? "src/main.rs" : "src/bin/" name ".rs"; \
        else if (path == "") path = (kind == "bench" ? "benches" : kind == "test" ? "tests" : "examples") "/" name ".rs"; \
        print kind, path; kind = "" \
      } \
      /^[ \t]*\[/ { flush(); section = $0; gsub(/[][ \t]/, "", section); name = ""; path = ""; \
                    if (section == "lib" || section ~ /^(bin|bench|test|example)$/) kind = section; next } \
      /^[ \t]*name[ \t]*=/ { if (section == "package") package = $2; else name = $2 } \
      /^[ \t]*path[ \t]*=/ { path = $2 } \
      END { flush() } \
    ' Cargo.toml > /tmp/stubs \
 && while read -r kind path; do \
      mkdir -p "$(dirname "$path")"; \
      if [ "$kind" = lib ]; then : > "$path"; else echo 'fn main() {}' > "$path"; fi; \
    done < /tmp/stubs \
 && cargo build --release --locked --bin order-gateway \
 && cut -d' ' -f2 /tmp/stubs | xargs rm -f && rm /tmp/stubs
COPY . .
# The stubs' artifacts are newer than the copied sources: touch so cargo rebuilds the crate itself.
# Line tables stay in (profile.release debug = "line-tables-only"): backtraces
# name files and lines. Compressed (zlib, which the standard library's
# backtraces read), they take a third of the room: the binary shrinks from
# 155 MB to 71 MB (42 MB without them).
# The revision for the build_info metric (build.rs; the context has no .git).
ARG REVISION=unknown
RUN touch src/main.rs src/lib.rs && ORDER_GATEWAY_REVISION="${REVISION}" cargo build --release --locked --bin order-gateway \
 && objcopy --compress-debug-sections=zlib target/release/order-gateway /order-gateway

FROM ${RUNTIME_IMAGE}
# The binary links libc, libm, libgcc_s and zlib only (OpenSSL is inside it).
# ca-certificates: the system roots every TLS client trusts (rustls reads
# them; librdkafka finds them by probing); zlib1g (librdkafka's compression)
# is in the base image already and named so that stays true.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates zlib1g \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log /var/lib/dpkg/*-old /var/cache/debconf/*-old \
 && groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid gateway --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin gateway
# After the packages, so that a new revision does not invalidate their layer.
ARG VERSION=unknown
ARG REVISION=unknown
ARG SOURCE=
LABEL org.opencontainers.image.title="order-gateway" \
      org.opencontainers.image.description="Read layer of the Order Management System: cached order views over Kafka, Elasticsearch and ClickHouse" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /order-gateway /usr/local/bin/order-gateway
# For reference only: the defaults are compiled into the binary. Mount a file
# with your settings and pass --config FILE or ORDER_GATEWAY_CONFIG=FILE.
COPY config/default.toml /etc/order-gateway/default.toml
USER 10001:10001
ENV ORDER_GATEWAY__SERVER__LISTEN=0.0.0.0:8080
EXPOSE 8080
# `healthcheck` asks /healthz at server.listen (0.0.0.0 means localhost): no curl in the image.
HEALTHCHECK --interval=10s --timeout=4s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/order-gateway", "healthcheck"]
# SIGTERM drains: /readyz says so for server.shutdown_delay, then in-flight
# requests get up to server.shutdown_grace. Give `docker stop -t` more than both.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/order-gateway"]
CMD ["serve"]
