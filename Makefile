# The only place set-up lives. Every target creates what it needs on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .tools
AZURITE := $(TOOLS)/node_modules/.bin/azurite-blob
AZURITE_VERSION := 3.37.0
CHROMIUM := /usr/bin/chromium
PYTEST_ARGS ?= -n 3 --dist loadfile

.PHONY: help install demo test lint bench bench-quick clean constraints stack stack-down stack-deps stack-os

help:
	@echo "make demo   - set everything up and run every example DAG against the local sandbox, S3 (moto) and Azurite"
	@echo "make test   - set everything up and run ruff, mypy and the whole test suite"
	@echo "make bench  - benchmarks (make bench-quick for a fast look)"
	@echo "make lint   - ruff + mypy"
	@echo "make stack  - docker-compose.yaml's CeleryExecutor stack on this machine, without docker (make stack-down stops it)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24"

# constraints.txt pins every transitive version so a fresh install resolves the same set each time.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[parquet,test]"
	@touch $@

$(AZURITE):
	@command -v npm >/dev/null || { echo "npm (Node.js 18+) is needed for Azurite"; exit 1; }
	mkdir -p $(TOOLS)
	npm install --silent --no-audit --no-fund --prefix $(TOOLS) azurite@$(AZURITE_VERSION)

# Debian's Chromium for the UI test (Playwright drives it; it cannot download its own browser here).
$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "install Chromium at $(CHROMIUM) (Debian/Ubuntu: apt-get install chromium)"; exit 1; }
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq chromium >/dev/null

install: $(VENV)/.installed $(AZURITE)

# ---- `make stack`: docker-compose.yaml's services as local processes (deploy/stack.py) ----------------
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
# The CeleryExecutor's Python side, pinned by constraints.txt (the Dockerfile installs the same).
STACK_PACKAGES := apache-airflow-providers-celery psycopg2-binary asyncpg

$(VENV)/.stack-installed: $(VENV)/.installed constraints.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt $(STACK_PACKAGES)
	@touch $@

# Postgres and Redis from the OS packages (Debian/Ubuntu), installed when missing, as root or through sudo.
stack-os:
	@if ! command -v redis-server >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  command -v apt-get >/dev/null || { echo "install PostgreSQL (initdb, postgres, psql) and redis-server"; exit 1; }; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql redis-server >/dev/null; \
	fi

stack-deps: install $(VENV)/.stack-installed stack-os

# Prints the UI URL and login; reports its total time, installation included (AEP_STACK_STARTED).
stack:
	@start=$$(date +%s); $(MAKE) --no-print-directory stack-deps && \
	AEP_STACK_STARTED=$$start AZURITE_BLOB=$(abspath $(AZURITE)) $(BIN)/python -m deploy.stack up

stack-down:
	$(BIN)/python -m deploy.stack down

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy

test: install $(CHROMIUM) stack-deps lint
	AZURITE_BLOB=$(abspath $(AZURITE)) $(BIN)/python -m pytest $(PYTEST_ARGS)

# The demo reports its total time, installation included (AEP_DEMO_STARTED).
demo:
	@start=$$(date +%s); $(MAKE) --no-print-directory install && \
	AEP_DEMO_STARTED=$$start AZURITE_BLOB=$(abspath $(AZURITE)) $(BIN)/python -m airflow_export_providers.demo

bench: install
	AZURITE_BLOB=$(abspath $(AZURITE)) $(BIN)/python bench/run.py

bench-quick: install
	AZURITE_BLOB=$(abspath $(AZURITE)) $(BIN)/python bench/run.py --quick

# Regenerate the pins (maintainers only): fresh venv, resolve, freeze.
constraints:
	rm -rf /tmp/aep-constraints && $(PYTHON) -m venv /tmp/aep-constraints
	/tmp/aep-constraints/bin/pip install --quiet ".[parquet,test]"
	/tmp/aep-constraints/bin/pip freeze --exclude airflow-export-providers > constraints.txt

clean:
	rm -rf $(VENV) $(TOOLS) build *.egg-info
