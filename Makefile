# Penguin12 — run `make` (or `make help`) for the list of targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export UV_LINK_MODE ?= copy
UV ?= $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")
RUN := $(UV) run --frozen

.PHONY: help setup setup-test run stop status logs test lint typecheck test-only bench bench-full clean chaos audit env

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "}; /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: ## Install everything local runs and tests need (uv, Python deps from uv.lock, redis, Kafka jars)
	@bash infra/local/setup.sh

setup-test: setup ## Also install what the tests need: Chromium (Debian package), Prometheus, Jaeger (built once)
	@bash infra/local/setup-test.sh

run: setup ## Start Kafka (KRaft; PENGUIN12_KAFKA_BROKERS=3: a cluster), Redis and the four services; prints URLs
	@$(RUN) python -m penguin12_devstack up

stop: ## Stop everything `make run` started
	@if [ -x "$(UV)" ] && [ -d .venv ]; then $(RUN) python -m penguin12_devstack down; else echo "nothing to stop"; fi

status: ## Show which local components are running
	@$(RUN) python -m penguin12_devstack status

logs: ## Follow the local services' logs
	@tail -n 20 -F .run/logs/*.log

lint: ## Ruff lint and format check
	@$(RUN) ruff check .
	@$(RUN) ruff format --check .

typecheck: ## Mypy over every service and the shared package
	@$(RUN) mypy libs/penguin12/src libs/penguin12_model/src services/preprocessor/src services/feature_extractor/src services/classifier/src services/provenance/src infra/devstack/src clients/python/src tools/penguin12_ops/src

test-only: ## Run the test suite (starts its own Kafka and Redis on free ports)
	@$(RUN) pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "test-only: pytest collected no tests (exit 5): nothing was tested" >&2; fi; \
	exit $$rc

test: setup-test lint typecheck audit test-only ## Lint, type check, dependency audit and the whole test suite

bench: setup ## Benchmarks, quick (a few minutes): bare limit, pipeline, ingest, vs sync, latency, growth
	@$(RUN) python -m bench.run_all

bench-full: setup ## Benchmarks, report mode (longer): the figures published in docs/benchmarks.md
	@$(RUN) python -m bench.run_all --full

clean: stop ## Stop, then remove local run state (.run/); caches in .cache/ are kept
	@rm -rf .run


env: ## Write .env for `docker compose up`: random API key, webhook secret, Grafana password (FORCE=1 replaces one)
	@$(RUN) python -m penguin12_devstack env $(if $(FORCE),--force,)

chaos: ## Faults, load and poison against the local stack (starts it); CHAOS_FULL=1 for the long run
	@$(RUN) python -m chaos

audit: ## Known vulnerabilities in uv.lock (allow-list: audit/allowlist.toml) and a secrets scan
	@UV="$(UV)" $(RUN) python audit/audit.py
