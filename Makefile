# modelbus — the commands a person needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

KAFKA_PORT ?= 19092
KAFKA_BROKERS ?= 1
# none, sasl (SCRAM-SHA-512 + ACLs) or sasl_ssl (the same over TLS); see README "Security".
KAFKA_SECURITY ?= none
# The tests get a broker of their own (another port and data directory), so `make test`
# never reads or writes the lifecycle log of `make demo`/`make up`.
TEST_KAFKA_PORT ?= 19192
TEST_RUN_DIR ?= $(CURDIR)/.run/test
# The suite runs on a secured broker (SCRAM, ACLs) as its admin principal; brokers the tests
# start themselves take the same credentials. TEST_SECURITY=none runs it in plaintext.
TEST_SECURITY ?= sasl
TEST_KAFKA := KAFKA_SECURITY=$(TEST_SECURITY) KAFKA_PORT=$(TEST_KAFKA_PORT) MODELBUS_RUN_DIR=$(TEST_RUN_DIR) infra/kafka/kafka.sh
TEST_AS_ADMIN := $(if $(filter sasl,$(TEST_SECURITY)),source $(TEST_RUN_DIR)/kafka-$(TEST_KAFKA_PORT)/credentials/admin.env && unset MODELBUS_KAFKA_CREDENTIALS_DIR &&)
# The demo tells its story on an empty log: a broker and state of its own, fresh on every run.
DEMO_KAFKA_PORT ?= 19292
DEMO_RUN_DIR ?= $(CURDIR)/.run/demo
# Security on (SCRAM, ACLs, each service as its own principal, the demo itself as admin);
# DEMO_SECURITY=none runs it in plaintext.
DEMO_SECURITY ?= sasl
DEMO_KAFKA := KAFKA_SECURITY=$(DEMO_SECURITY) KAFKA_PORT=$(DEMO_KAFKA_PORT) MODELBUS_RUN_DIR=$(DEMO_RUN_DIR) infra/kafka/kafka.sh
DEMO_AS_ADMIN := $(if $(filter sasl sasl_ssl,$(DEMO_SECURITY)),source $(DEMO_RUN_DIR)/kafka-$(DEMO_KAFKA_PORT)/credentials/admin.env &&)
DEMO_ARGS ?=
export MODELBUS_BOOTSTRAP_SERVERS ?= 127.0.0.1:$(KAFKA_PORT)
# Signing keys (one Ed25519 pair per role), made by `make setup` when missing; never committed.
KEYS_DIR ?= $(CURDIR)/.run/keys
export MODELBUS_SIGNING_KEY ?= $(KEYS_DIR)
export MODELBUS_TRUSTED_KEYS ?= $(KEYS_DIR)
UV ?= uv
PYTEST := $(UV) run --frozen pytest

.PHONY: help setup kafka-up kafka-down acls test-kafka-up test-kafka-down demo-down lint fmt codegen test test-unit test-integration test-e2e bench demo up down status

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

setup: ## install Python deps from uv.lock and the Kafka jars from Maven Central
	@command -v $(UV) >/dev/null || python3 -m pip install --quiet uv
	$(UV) sync --frozen --all-packages
	infra/kafka/kafka.sh setup
	$(UV) run --frozen modelbus keys generate --dir $(KEYS_DIR) >/dev/null  # keeps keys; adds a new role's

kafka-up: ## start the native Kafka broker, or a cluster with KAFKA_BROKERS=3, KAFKA_SECURITY=sasl for SCRAM + ACLs
	KAFKA_PORT=$(KAFKA_PORT) KAFKA_BROKERS=$(KAFKA_BROKERS) KAFKA_SECURITY=$(KAFKA_SECURITY) infra/kafka/kafka.sh up

acls: ## apply the ACL table to the broker as admin (KAFKA_SECURITY=sasl; kafka-up does it too)
	source $(CURDIR)/.run/kafka-$(KAFKA_PORT)/credentials/admin.env && $(UV) run --frozen modelbus acls apply

kafka-down: ## stop the native Kafka broker (or cluster)
	KAFKA_PORT=$(KAFKA_PORT) KAFKA_BROKERS=$(KAFKA_BROKERS) infra/kafka/kafka.sh down

lint: ## ruff (lint + format check) and mypy
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen python -m modelbus.events.codegen --check || (echo "events/types.py is stale: run make codegen" && exit 1)
	$(UV) run --frozen mypy

fmt: ## format the code
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

codegen: ## regenerate the typed event classes from schemas/
	$(UV) run --frozen python -m modelbus.events.codegen

# The tests sign with throwaway keys of their own (tests/conftest.py), never the user's.
test: setup test-kafka-up ## unit + integration + e2e tests against the tests' own broker
	$(TEST_AS_ADMIN) MODELBUS_SIGNING_KEY= MODELBUS_TRUSTED_KEYS= MODELBUS_BOOTSTRAP_SERVERS=127.0.0.1:$(TEST_KAFKA_PORT) \
	  $(PYTEST) tests/unit tests/integration tests/e2e

test-kafka-up: ## start the tests' own broker (port TEST_KAFKA_PORT, data under .run/test, TEST_SECURITY)
	$(TEST_KAFKA) up

test-kafka-down: ## stop the tests' broker
	$(TEST_KAFKA) down

test-unit: ## unit tests only (no broker)
	MODELBUS_SIGNING_KEY= MODELBUS_TRUSTED_KEYS= $(PYTEST) tests/unit

BENCH := $(TEST_AS_ADMIN) MODELBUS_BOOTSTRAP_SERVERS=127.0.0.1:$(TEST_KAFKA_PORT) $(UV) run --frozen python -m

bench: setup test-kafka-up ## run the benchmarks (on the tests' broker); JSON results in benchmarks/results/
	$(BENCH) benchmarks.codec
	$(BENCH) benchmarks.training
	$(BENCH) benchmarks.inference
	$(BENCH) benchmarks.drift
	$(BENCH) benchmarks.rollout
	$(BENCH) benchmarks.faults
	$(UV) run --frozen python -m benchmarks.cluster
	$(UV) run --frozen python -m benchmarks.loop

demo: setup ## the whole loop (drift -> retrain -> canary -> promote, bad model -> rollback), fresh broker
	-$(DEMO_KAFKA) down
	rm -rf $(DEMO_RUN_DIR)
	$(DEMO_KAFKA) up
	$(DEMO_AS_ADMIN) MODELBUS_BOOTSTRAP_SERVERS=127.0.0.1:$(DEMO_KAFKA_PORT) MODELBUS_RUN_DIR=$(DEMO_RUN_DIR) \
	  $(UV) run --frozen modelbus demo $(DEMO_ARGS) $(if $(DEMO_KEEP),--keep-running); status=$$?; \
	  if [ -z "$(DEMO_KEEP)" ]; then $(DEMO_KAFKA) down; else \
	  echo "demo broker left on 127.0.0.1:$(DEMO_KAFKA_PORT) (make demo-down stops it)"; fi; exit $$status

demo-down: ## stop the demo's services and broker (after `make demo DEMO_KEEP=1`)
	-MODELBUS_RUN_DIR=$(DEMO_RUN_DIR) $(UV) run --frozen modelbus down
	-$(DEMO_KAFKA) down

up: setup kafka-up ## broker + topics + every service in the background
	$(UV) run --frozen modelbus up

down: ## stop every service started by `make up`, then the broker
	-$(UV) run --frozen modelbus down
	KAFKA_PORT=$(KAFKA_PORT) infra/kafka/kafka.sh down

status: ## what runs
	-KAFKA_PORT=$(KAFKA_PORT) infra/kafka/kafka.sh status
	-$(UV) run --frozen modelbus status
