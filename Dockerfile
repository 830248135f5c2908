# Multi-stage build: a Rust builder, then a small Debian runtime as a non-root user.
FROM rust:1.85-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && cargo build --release --locked --bin order-gateway || true
COPY . .
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin order-gateway

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home gateway
COPY --from=build /src/target/release/order-gateway /usr/local/bin/order-gateway
COPY config/default.toml /etc/order-gateway/default.toml
USER 10001
ENV ORDER_GATEWAY__SERVER__LISTEN=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=4s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/order-gateway", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/order-gateway"]
CMD ["serve"]
