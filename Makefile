# order-gateway: the two commands are `make dev` and `make test`.
# Everything they need is installed on first use (see README "What gets installed").

SHELL := /bin/bash
CARGO ?= cargo
GATEWAY_LISTEN ?= 127.0.0.1:8080
# Where `make install` puts bin/order-gateway (DESTDIR is prepended, for packaging).
PREFIX ?= /usr/local
# Version of the image tags: the package version in Cargo.toml.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
IMAGE ?= order-gateway
# The binary the pipeline targets (manage-es-indices, register-schemas) run:
# release (default, what `make dev` runs) or debug.
PROFILE ?= release
BIN := target/$(PROFILE)/order-gateway

.PHONY: help dev test ci build release bin install stack-up stack-down stack-status prereqs lint format clean loadtest bench \
	fuzz manage-es-indices register-schemas docker-build docker-run docker-down require-docker

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

prereqs: ## check the toolchains and install missing Debian packages
	@scripts/prereqs.sh

stack-up: prereqs ## install (first time) and start Kafka, schema registry, Elasticsearch, ClickHouse; install k6
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

.PHONY: manifests
manifests: ## offline checks of deploy/kubernetes: render with kustomize, Kubernetes schemas (strict), Istio structure, cross-checks, check-config
	@scripts/validate-manifests.sh

manage-es-indices: bin ## on the local stack: index template, first index and aliases, then rollover and retention (setup --only elasticsearch --rollover)
	@eval "$$(scripts/stack/env)"; $(BIN) setup --only elasticsearch --rollover

register-schemas: bin ## on the local stack: register the Avro schemas under <topic>-value (setup --only schemas)
	@eval "$$(scripts/stack/env)"; $(BIN) setup --only schemas

loadtest: prereqs ## k6 scenarios against the local stack after seeding (ORDERS, RATE, DURATION)
	@loadtest/run.sh

bench: ## criterion micro-benchmarks
	$(CARGO) bench --locked --bench model --bench hit_path --bench edge --bench cursor

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
require-docker: ## fail with a clear message unless the docker CLI and its daemon are usable
	@command -v docker >/dev/null 2>&1 || { echo "make: docker is not installed; the docker targets need it (the native stack does not: make dev)" >&2; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "make: docker is installed but its daemon does not answer (is dockerd running, may this user use it?)" >&2; exit 1; }

docker-build: require-docker ## docker build -t order-gateway:VERSION . (VERSION from Cargo.toml; IMAGE= renames)
	docker build -t $(IMAGE):$(VERSION) .

docker-run: require-docker ## docker compose up --build: the whole stack of docker-compose.yml (backends, setup, serve on :8080, ingest), foreground
	@docker compose version >/dev/null 2>&1 || { echo "make: the docker compose plugin is missing" >&2; exit 1; }
	ORDER_GATEWAY_IMAGE=$(IMAGE):$(VERSION) docker compose up --build

docker-down: require-docker ## stop and remove the compose stack (volumes too)
	docker compose down --volumes

clean: stack-down ## remove build output and the stack's data (downloads are kept in .stack/dist)
	$(CARGO) clean
	rm -rf .stack/data .stack/logs .stack/run
