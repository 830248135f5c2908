# Multi-stage build: a Rust builder, then a small Debian runtime as a non-root user.
#
#   docker build -t order-gateway:0.1.0 .      (or: make docker-build)
#
# Rust: Cargo.lock's newest crates need rustc 1.89 (clickhouse 0.15, uuid
# 1.29); the pinned toolchain is the one the project is built and tested with
# (--build-arg RUST_VERSION=1.89 or newer to change it).
# Builder and runtime are both Debian bookworm, so the binary's glibc matches.
ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
# rdkafka (features tokio, libz, ssl-vendored; no cmake feature) builds the
# bundled librdkafka with its configure script (bash) and make and a C
# compiler, and OpenSSL from source (perl) linked in statically, for Kafka's
# SSL and SCRAM; libz-sys links the system zlib found through pkg-config. The
# HTTP backends use rustls (no OpenSSL). The rust image has all of these; they
# are named here so that a slimmer base image fails at this line, not deep in cargo.
RUN apt-get update && apt-get install -y --no-install-recommends \
      build-essential perl pkg-config zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so source edits do not rebuild them: a stub crate with the
# same manifest (the benches Cargo.toml names must exist for it to load).
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && echo 'fn main() {}' > benches/model.rs && echo 'fn main() {}' > benches/hit_path.rs \
 && cargo build --release --locked --bin order-gateway \
 && rm -rf src benches
COPY . .
# The stub's artifacts are older than the sources: touch so cargo rebuilds the crate itself.
# Line tables stay in (profile.release debug = "line-tables-only"): backtraces name files and lines.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin order-gateway

FROM debian:bookworm-slim
# The binary links libc, libm, libgcc_s and zlib only (OpenSSL is inside it).
# ca-certificates: the system roots every TLS client trusts (rustls reads
# them; librdkafka finds them by probing); zlib1g (librdkafka's compression)
# is in the base image already and named so that stays true.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid gateway --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin gateway
COPY --from=build /src/target/release/order-gateway /usr/local/bin/order-gateway
# For reference only: the defaults are compiled into the binary. Mount a file
# with your settings and pass --config FILE or ORDER_GATEWAY_CONFIG=FILE.
COPY config/default.toml /etc/order-gateway/default.toml
USER 10001:10001
ENV ORDER_GATEWAY__SERVER__LISTEN=0.0.0.0:8080
EXPOSE 8080
# `healthcheck` asks /healthz at server.listen (0.0.0.0 means localhost): no curl in the image.
HEALTHCHECK --interval=10s --timeout=4s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/order-gateway", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/order-gateway"]
CMD ["serve"]
