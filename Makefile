# The two newcomer commands are `make run` and `make test` (see README.md).
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PYTEST_ARGS ?=
# The official AsyncAPI parser (tests/tooling/asyncapi: package.json and its lockfile).
ASYNCAPI_TOOL := tests/tooling/asyncapi
ASYNCAPI_NODE := var/node

.PHONY: install lint test test-unit services services-stop browser asyncapi-tool run bench bench-api bench-scale clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check lifecycle store consumers projections audit web service tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

## The whole suite: lint, type check, unit, integration (real Kafka and PostgreSQL),
## and the dashboard in a real headless Chromium.
test: lint services browser asyncapi-tool
	source <(deploy/local/services.sh env) && $(BIN)/pytest $(PYTEST_ARGS)

## Fast domain tests only (no services).
test-unit: install
	$(BIN)/pytest -m "not integration" $(PYTEST_ARGS)

## The official AsyncAPI parser from the npm registry, as the lockfile pins it, into var/node
## (no install scripts run); the AsyncAPI test validates the document with it.
asyncapi-tool: $(ASYNCAPI_NODE)/.installed

$(ASYNCAPI_NODE)/.installed: $(ASYNCAPI_TOOL)/package.json $(ASYNCAPI_TOOL)/package-lock.json
	@command -v npm >/dev/null || { echo "make asyncapi-tool: npm (Node.js 20+) is required" >&2; exit 1; }
	mkdir -p $(ASYNCAPI_NODE)
	cp $(ASYNCAPI_TOOL)/package.json $(ASYNCAPI_TOOL)/package-lock.json $(ASYNCAPI_NODE)/
	SCARF_ANALYTICS=false npm ci --prefix $(ASYNCAPI_NODE) --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

## The main job on the embedded SQLite store with local Kafka and a sample stream.
run: install
	deploy/local/run.sh

services:
	deploy/local/services.sh start

## Debian's Chromium for the browser tests (Playwright drives it; no browser download),
## and a CJK font so the screenshots show Chinese names.
browser:
	@{ command -v chromium >/dev/null && fc-list 2>/dev/null | grep -qi wenquanyi; } || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    chromium fonts-wqy-zenhei >/dev/null; }

## Ingest throughput against raw PostgreSQL COPY (bench/README.md).
bench: install services
	source <(deploy/local/services.sh env) && $(BIN)/python -m bench.ingest

## Read API latency at a steady 300 requests/s.
bench-api: install services
	source <(deploy/local/services.sh env) && $(BIN)/python -m bench.api

## 1, 2 and 3 ingest processes (+ relay, standby relay, projector) on one PostgreSQL store.
bench-scale: install services
	source <(deploy/local/services.sh env) && $(BIN)/python -m bench.scale

services-stop:
	deploy/local/services.sh stop

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
