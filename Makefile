# order-gateway: the two commands are `make dev` and `make test`.
# Everything they need is installed on first use (see README "What gets installed").

SHELL := /bin/bash
CARGO ?= cargo
GATEWAY_LISTEN ?= 127.0.0.1:8080

.PHONY: help dev test ci build release stack-up stack-down stack-status prereqs lint format clean loadtest bench

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

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

dev: stack-up release ## stack up, then the gateway on $(GATEWAY_LISTEN) in the foreground (Ctrl-C stops it)
	@eval "$$(scripts/stack/env)"; \
	  ORDER_GATEWAY__SERVER__LISTEN=$(GATEWAY_LISTEN) ORDER_GATEWAY__LOG__FORMAT=$${ORDER_GATEWAY__LOG__FORMAT:-text} \
	  exec target/release/order-gateway --config $${ORDER_GATEWAY_CONFIG:-config/dev.toml} serve

test: prereqs ## stack up, every test, stack down; non-zero on any failure
	@scripts/test.sh

loadtest: prereqs ## k6 scenarios against the local stack after seeding (ORDERS, RATE, DURATION)
	@loadtest/run.sh

bench: ## criterion micro-benchmarks
	$(CARGO) bench --locked --bench model --bench hit_path

.PHONY: bench-compare
bench-compare: prereqs ## gateway vs Varnish, Elasticsearch, nginx and a bare hyper server, one table (ORDERS, FIXED_RATE, STEP_SECONDS, PIN)
	@scripts/bench-compare.sh

ci: lint test ## what CI runs, plus lint

lint: ## clippy with warnings denied, and the format check
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

format: ## format the code
	$(CARGO) fmt --all

clean: stack-down ## remove build output and the stack's data (downloads are kept in .stack/dist)
	$(CARGO) clean
	rm -rf .stack/data .stack/logs .stack/run
