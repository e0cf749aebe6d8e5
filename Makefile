# event-poller developer commands. `make help` lists them.
SHELL := /bin/bash
KAFKA := deploy/kafka/kafka.sh
CARGO ?= cargo
# The local broker's port; tests are pointed at it.
export KAFKA_PORT ?= 9092
export KAFKA_BOOTSTRAP_SERVERS ?= 127.0.0.1:$(KAFKA_PORT)

.PHONY: help build test lint unit integration chaos kafka-up kafka-down kafka-restart kafka-status demo bench clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## build the binaries (release)
	$(CARGO) build --release --workspace --bins

lint: ## formatting and clippy, warnings are errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit: ## unit tests and doc tests (no broker needed)
	$(CARGO) test --workspace --lib --bins
	$(CARGO) test --workspace --doc

# Integration tests need the real broker; it is brought down even when a
# test fails, and the test's exit status is kept.
integration: ## integration tests against a local Kafka (started and stopped here)
	$(CARGO) test --workspace --test '*' --no-run
	$(MAKE) kafka-up
	status=0; $(CARGO) test --workspace --test '*' --no-fail-fast -- --test-threads=2 || status=$$?; \
	  $(MAKE) kafka-down; exit $$status

# Workers killed, paused, stopped, added and removed at random, the broker
# restarted once, while the shops change and the provider misbehaves; then
# one exactly-once check and a summary line. `make test` runs a 60 s smoke.
CHAOS_SECONDS ?= 300
chaos: ## chaos run against a local Kafka (CHAOS_SECONDS, default 300)
	$(CARGO) test --test chaos --no-run
	$(MAKE) kafka-up
	status=0; CHAOS_SECONDS=$(CHAOS_SECONDS) $(CARGO) test --test chaos -- --nocapture || status=$$?; \
	  $(MAKE) kafka-down; exit $$status

test: lint unit integration ## everything CI runs: lint, unit, Kafka up, integration, Kafka down

kafka-up: ## start the local single-node Kafka (idempotent)
	$(KAFKA) up

kafka-down: ## stop the local Kafka started by kafka-up (idempotent)
	$(KAFKA) down

kafka-restart: ## stop and start the local Kafka, keeping its topics and offsets
	$(KAFKA) restart

kafka-status: ## is the local Kafka running and answering?
	$(KAFKA) status

demo: ## local Kafka + Keap sandbox + poller; prints events until Ctrl-C, then stops all
	deploy/demo.sh

# End-to-end benchmarks (crates/bench: `poller-bench all`) into
# docs/benchmarks.md, each figure against a baseline measured in the same
# run; the full run then adds the criterion micro-benchmarks. Kafka is
# brought up, and down at the end only if it was not running before.
bench: ## end-to-end benchmarks into docs/benchmarks.md (BENCH_QUICK=1: 3-minute smoke into .cache/bench/)
	$(CARGO) build --release --workspace --bins
	was_up=0; $(KAFKA) status >/dev/null 2>&1 && was_up=1; \
	  $(KAFKA) up || exit $$?; \
	  status=0; target/release/poller-bench all $(if $(filter 1,$(BENCH_QUICK)),--quick --out .cache/bench/benchmarks-quick.md) || status=$$?; \
	  if [ $$status -eq 0 ] && [ "$(BENCH_QUICK)" != 1 ] && [ -f benches/micro.rs ]; then \
	    $(CARGO) bench --bench micro || status=$$?; \
	  fi; \
	  if [ $$was_up -eq 0 ]; then $(KAFKA) down; fi; exit $$status

clean: kafka-down ## stop Kafka, remove build output and the local Kafka data
	$(CARGO) clean
	rm -rf .cache/kafka/run-*
