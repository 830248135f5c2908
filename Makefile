# order-gateway: the two commands are `make dev` and `make test`.
# Everything they need is installed on first use (see README "What gets installed").

SHELL := /bin/bash
CARGO ?= cargo
GATEWAY_LISTEN ?= 127.0.0.1:8080
# Where `make install` puts bin/order-gateway (DESTDIR is prepended, for packaging).
PREFIX ?= /usr/local
# Version of the image tags: the package version in Cargo.toml.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
IMAGE_NAME ?= order-gateway
# The binary the pipeline targets (manage-es-indices, register-schemas) run:
# release (default, what `make dev` runs) or debug.
PROFILE ?= release
BIN := target/$(PROFILE)/order-gateway

.PHONY: help dev test ci build release bin install stack-up stack-down stack-status prereqs lint format clean loadtest bench \
	fuzz manage-es-indices register-schemas docker-build docker-keys docker-run docker-down require-docker image-test

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

prereqs: ## check the toolchains and install missing Debian packages
	@scripts/prereqs.sh

stack-up: prereqs ## install (first time) and start Kafka, schema registry, Elasticsearch, ClickHouse, PostgreSQL, Kafka Connect; install k6
	@scripts/stack/start

stack-down: ## stop exactly what stack-up started
	@scripts/stack/stop

stack-status: ## one line per component
	@scripts/stack/status

build: ## debug build of the binary and the tests
	$(CARGO) build --locked --all-targets

release: ## optimised binary at target/release/order-gateway
	$(CARGO) build --locked --release --bin order-gateway

bin: ## build target/PROFILE/order-gateway, PROFILE=release (default) or debug
	$(CARGO) build --locked $(if $(filter release,$(PROFILE)),--release,) --bin order-gateway

install: release ## build, then copy target/release/order-gateway to DESTDIR/PREFIX/bin (PREFIX=/usr/local); no cargo install
	install -D -m 0755 target/release/order-gateway $(DESTDIR)$(PREFIX)/bin/order-gateway
	@echo "installed $(DESTDIR)$(PREFIX)/bin/order-gateway ($(VERSION)); the default configuration is compiled in"

dev: stack-up release ## stack up, setup, demo data (first run), then ingest and the gateway on $(GATEWAY_LISTEN) (Ctrl-C stops them)
	@GATEWAY_LISTEN=$(GATEWAY_LISTEN) scripts/dev.sh

test: prereqs ## stack up, every test, stack down; non-zero on any failure
	@scripts/test.sh

fuzz: stack-up ## schemathesis against the debug gateway on a free port (the stack is left running); see scripts/fuzz-gateway.sh
	$(CARGO) build --locked --bin order-gateway
	@scripts/fuzz-gateway.sh

.PHONY: chaos
chaos: prereqs ## the reliability suite at full size against the release gateway, cluster scenarios included; writes RELIABILITY.md (SOAK=10m, ONLY=<name>, CLUSTER=0)
	@scripts/chaos.sh

.PHONY: manifests
manifests: ## offline checks of deploy/kubernetes: render with kustomize, Kubernetes schemas (strict), Istio structure, cross-checks, check-config
	@scripts/validate-manifests.sh

manage-es-indices: bin ## on the local stack: index template, first index and aliases, then rollover and retention (setup --only elasticsearch --rollover)
	@eval "$$(scripts/stack/env)"; $(BIN) setup --only elasticsearch --rollover

register-schemas: bin ## on the local stack: register the Avro schemas under <topic>-value (setup --only schemas)
	@eval "$$(scripts/stack/env)"; $(BIN) setup --only schemas

# The Debezium connector that scripts/connector.sh deploys (its ${VAR}s from the stack).
CONNECTOR_FILE ?= connectors/legacy-orders.json

.PHONY: deploy-connector connector-status
deploy-connector: ## on the local stack: create or update the Debezium connector connectors/legacy-orders.json (CONNECTOR_FILE=...), wait until it runs
	@eval "$$(scripts/stack/env)"; scripts/connector.sh deploy $(CONNECTOR_FILE)

connector-status: ## state of that connector and its tasks (a failed task's trace); non-zero unless RUNNING
	@eval "$$(scripts/stack/env)"; scripts/connector.sh status $(CONNECTOR_FILE)

loadtest: prereqs ## k6 scenarios against the local stack after seeding (ORDERS, RATE, DURATION)
	@loadtest/run.sh

bench: ## criterion micro-benchmarks
	$(CARGO) bench --locked --bench model --bench hit_path --bench edge --bench cursor

.PHONY: bench-live
bench-live: prereqs release ## live updates: produce -> pushed latency with 1 and 1,000 subscribers, memory per stream, against the release gateway (LIVE_UPDATES=200)
	scripts/stack/start && eval "$$(scripts/stack/env)" && ORDER_GATEWAY_BIN=$(CURDIR)/target/release/order-gateway $(CARGO) test --test live -- --ignored --nocapture live_push_benchmark

.PHONY: bench-instructions
bench-instructions: ## instructions per cache hit under callgrind, gateway server against the bare server, and where they go (HIT_SERVER=<binary> to measure another build)
	@scripts/bench-instructions.sh

.PHONY: bench-compare
bench-compare: prereqs ## gateway vs Varnish, Elasticsearch, nginx and a bare hyper server, one table (ORDERS, FIXED_RATE, STEP_SECONDS, PIN; BASE=<rev> adds the gateway at that revision)
	@scripts/bench-compare.sh

ci: lint test ## what CI runs, plus lint

lint: ## clippy with warnings denied, and the format check
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

format: ## format the code
	$(CARGO) fmt --all

# Docker is optional (the native stack needs none); these targets say so when it is missing.
# ENGINE=podman builds and runs the image with podman instead (COMPOSE=podman-compose for the stack).
ENGINE ?= docker
COMPOSE ?= docker compose
REVISION := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE ?= $(shell git remote get-url origin 2>/dev/null)

require-docker: ## fail with a clear message unless the engine (ENGINE=docker: the CLI and its daemon) is usable
	@command -v $(ENGINE) >/dev/null 2>&1 || { echo "make: $(ENGINE) is not installed; the docker targets need it or ENGINE=podman (the native stack needs neither: make dev)" >&2; exit 1; }
	@$(ENGINE) info >/dev/null 2>&1 || { echo "make: $(ENGINE) is installed but does not answer (is its daemon running, may this user use it?)" >&2; exit 1; }

docker-build: require-docker ## build IMAGE_NAME:VERSION (order-gateway:0.1.0) with OCI labels from Cargo.toml and git; BUILD_ARGS="--build-arg RUST_IMAGE=..." to change a base
	$(ENGINE) build $(if $(filter podman,$(ENGINE)),--format docker,) \
	  --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) --build-arg SOURCE=$(SOURCE) $(BUILD_ARGS) \
	  --label org.opencontainers.image.version=$(VERSION) --label org.opencontainers.image.revision=$(REVISION) \
	  -t $(IMAGE_NAME):$(VERSION) .

docker-keys: ## make config/docker.keys.env (git-ignored), the compose stack's API key, unless it exists; prints the new key once
	@ENGINE=$(ENGINE) GATEWAY_IMAGE=$(IMAGE_NAME):$(VERSION) scripts/docker-keys.sh

docker-run: docker-build docker-keys ## the whole stack of docker-compose.yml (backends, setup, serve on 127.0.0.1:8080, ingest), foreground
	@$(COMPOSE) version >/dev/null 2>&1 || { echo "make: $(COMPOSE) is missing (the docker compose plugin, or COMPOSE=podman-compose)" >&2; exit 1; }
	ORDER_GATEWAY_IMAGE=$(IMAGE_NAME):$(VERSION) $(COMPOSE) up

docker-down: ## stop and remove the compose stack (volumes too)
	$(COMPOSE) down --volumes

image-test: prereqs stack-up ## the compose file's checks, then the image built and run against the native stack (make test does both; IMAGE=0 skips them there)
	@scripts/compose-check.sh
	@scripts/image-test.sh

clean: stack-down ## remove build output and the stack's data (downloads are kept in .stack/dist)
	$(CARGO) clean
	rm -rf .stack/data .stack/logs .stack/run
