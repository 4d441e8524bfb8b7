# omnistitch — make targets. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
OMNI   := $(BIN)/omnistitch
MVN    ?= mvn
PYTEST_ARGS ?=

VENV_STAMP := $(VENV)/.installed
JARS_STAMP := stack/lib/.fetched

BENCH_ARGS ?=
BENCH_ACCURACY_ARGS ?=
GENERATE_ARGS ?= --customers 1000 --seed 1 --output .stack/generated.jsonl
BOOTSTRAP ?= $(or $(OMNISTITCH_BOOTSTRAP_SERVERS),127.0.0.1:9092)

.PHONY: serve activate consume bench bench-profile bench-latency bench-commit-lag bench-accuracy help setup up down status logs topics register-schemas check-schemas worker collector files generate test test-browser test-unit test-integration lint typecheck imports check demo clean

help: ## List every target
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# The build backend's warnings (an editable install) are not the user's business.
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $@

$(JARS_STAMP): stack/pom.xml
	$(MVN) -f stack/pom.xml -B -q process-resources
	@touch $@

setup: $(VENV_STAMP) $(JARS_STAMP) ## Create .venv with the project + dev extras and fetch the Kafka/registry jars (idempotent)

up: setup ## Start Kafka (KRaft) on 127.0.0.1:9092 and the registry on :8081, create the topics; SECURE=1 adds SASL_SSL on :9094
	$(OMNI) stack up $(if $(SECURE),--secure,)

consume: setup ## Read a topic from the start: TOPIC=<name> with Kafka's console consumer; DECODE=1 decodes Avro through the registry (omnistitch tail)
	@test -n "$(TOPIC)" || { echo "usage: make consume TOPIC=<topic> [DECODE=1]"; exit 2; }
ifeq ($(DECODE),1)
	$(OMNI) tail $(TOPIC)
else
	java -Dlog4j.configuration=file:stack/tools-log4j.properties -cp "stack/lib/kafka/*:stack/lib/tools/*" \
	    org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server $(BOOTSTRAP) \
	    --topic $(TOPIC) --from-beginning --timeout-ms 10000 --property print.key=true
endif

down: ## Stop the local stack (no JVM left; success when nothing runs)
	@if [ -x $(OMNI) ]; then $(OMNI) stack down; else echo "nothing to stop (no .venv)"; fi

status: setup ## Show the stack's processes, readiness and topics
	$(OMNI) stack status --allow-stopped

logs: setup ## Show the last lines of the broker and registry logs
	$(OMNI) stack logs --lines 60

topics: setup ## List the project's topic definitions
	$(OMNI) topics list

register-schemas: setup ## Register the topics' value schemas in the running registry (BACKWARD)
	$(OMNI) schemas register

check-schemas: setup ## Fail if a schema in schemas/ cannot read data of its released version
	$(OMNI) schemas check

# The stack's vault: the connectors seal, the worker opens, an erase shreds (docs/erasure.md).
worker collector files serve activate demo: export OMNISTITCH_VAULT_URL ?= http://127.0.0.1:$(or $(OMNISTITCH_VAULT_PORT),8200)
# /metrics, /health/live and /health/ready of the worker and the file connector (docs/operations.md).
worker: export OMNISTITCH_METRICS_PORT ?= 9400
files: export OMNISTITCH_METRICS_PORT ?= 9401

worker: up ## Run the stitching worker in the foreground against the local stack (metrics on :9400)
	$(OMNI) worker

serve: up ## Run the profile API and viewer on :8300 (local token in .stack/serve/token)
	$(OMNI) serve

activate: up ## Evaluate audiences on the profiles: AUDIENCES=<file.yaml> (docs/audiences.md)
	$(OMNI) activate --audiences $(or $(AUDIENCES),docs/audiences.example.yaml)

collector: up ## Run the HTTP collector (Segment API + webhooks) on :8090; needs OMNISTITCH_WRITE_KEYS
	$(OMNI) collector

files: up ## Run the file connector on .stack/drop (pos/, crm/ CSV and JSONL exports; metrics on :9401)
	$(OMNI) files

generate: setup ## Write synthetic omnichannel events: GENERATE_ARGS="--customers 1000 --seed 1 --output events.jsonl"
	$(OMNI) generate $(GENERATE_ARGS)

test: setup ## Run unit and integration tests (integration tests start their own broker)
	$(BIN)/pytest tests -m "not browser" $(PYTEST_ARGS)

BROWSER_STAMP := stack/browser/node_modules/.installed
$(BROWSER_STAMP): stack/browser/package.json stack/browser/package-lock.json
	npm ci --prefix stack/browser --no-audit --no-fund --silent
	@touch $@

test-browser: setup $(BROWSER_STAMP) ## analytics.js in headless Chromium against the collector (needs chromium)
	@command -v chromium >/dev/null || { echo "test-browser needs Chromium: apt-get install chromium" >&2; exit 2; }
	$(BIN)/pytest tests -m browser $(PYTEST_ARGS)

test-unit: setup ## Run the fast unit tests only (no broker)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-integration: setup ## Run the integration tests only (real broker)
	$(BIN)/pytest tests/integration -m "not browser" $(PYTEST_ARGS)

lint: setup ## ruff
	$(BIN)/ruff check pipeline connectors tests bench
	$(BIN)/ruff format --check pipeline connectors tests bench

typecheck: setup ## mypy (strict)
	$(BIN)/mypy

imports: setup ## import-linter: the layering contracts of pyproject.toml (engine pure, contract alone, connectors apart)
	$(BIN)/lint-imports

check: lint typecheck imports ## Lint, type-check and check the layering

bench: setup ## Stitching vs pass-through throughput, replay speed, latency, RSS (own broker)
	$(BIN)/python -m bench.stitching $(BENCH_ARGS)

bench-profile: setup ## cProfile of replay's engine: where its time goes (BENCH_ARGS="--events 20000")
	$(BIN)/python -m bench.replay_profile $(BENCH_ARGS)

bench-latency: setup ## Event-to-journey latency hop by hop at a fixed rate, and CPU per process (BENCH_ARGS="--rate 1000")
	$(BIN)/python -m bench.latency_hops $(BENCH_ARGS)

bench-commit-lag: setup ## Committed vs end offsets of customer-ops while a worker restarts through a backlog (own broker)
	$(BIN)/python -m bench.commit_lag $(BENCH_ARGS)

bench-accuracy: setup ## F1 of deterministic, default and trained probabilistic stitching next to Splink
	$(BIN)/python -m bench.accuracy $(BENCH_ACCURACY_ARGS)

demo: up ## Run the main job end to end: synthetic customers through the connectors and the stitcher, a report
	$(BIN)/python -m pipeline.cli.demo

clean: down ## Stop the stack and remove its data (keeps .venv and jars)
	rm -rf .stack
