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
UV := $(BIN)/uv
# The floor: Airflow 3.0.2 with the lowest versions pyproject.toml declares (constraints-floor.txt).
FLOOR := .venv-floor
FLOOR_PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: help install demo test test-floor lint bench bench-quick clean constraints constraints-floor stack stack-down stack-deps stack-os

help:
	@echo "make demo   - set everything up and run every example DAG against the local sandbox, S3 (moto) and Azurite"
	@echo "make test   - set everything up and run ruff, mypy, the whole test suite (Airflow 3.3) and the floor suite (Airflow 3.0)"
	@echo "make test-floor - only the representative suite on the floor (Airflow 3.0.2, lowest declared providers)"
	@echo "make bench  - benchmarks (make bench-quick for a fast look)"
	@echo "make lint   - ruff + mypy"
	@echo "make stack  - docker-compose.yaml's CeleryExecutor stack on this machine, without docker (make stack-down stops it)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24"

# constraints.txt pins every transitive version so a fresh install resolves the same set each time.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[all,test]"
	@touch $@

# The floor venv, made with uv (from the pinned .venv) in seconds from its cache.
$(FLOOR)/.installed: $(VENV)/.installed pyproject.toml constraints-floor.txt
	rm -rf $(FLOOR)
	$(UV) venv --quiet --python $(PYTHON) $(FLOOR)
	$(UV) pip install --quiet --python $(FLOOR)/bin/python -c constraints-floor.txt -e ".[all,test]"
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

# Each part reports its wall time (the budget for all of `make test` is 25 minutes on 2 cores).
test: install $(CHROMIUM) stack-deps lint
	@start=$$(date +%s); AZURITE_BLOB=$(abspath $(AZURITE)) $(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	echo "make test: full suite on the pinned set (Airflow 3.3) took $$(( $$(date +%s) - start ))s"; exit $$rc
	@$(MAKE) --no-print-directory test-floor

# The representative suite (tests/floor.txt) on the floor: every unit test, the retry-resume tests,
# one dag.test() landing per vendor and per destination.
test-floor: $(AZURITE)
	@start=$$(date +%s); $(MAKE) --no-print-directory $(FLOOR)/.installed; \
	echo "make test: floor venv (Airflow 3.0.2) ready in $$(( $$(date +%s) - start ))s"
	@start=$$(date +%s); AZURITE_BLOB=$(abspath $(AZURITE)) $(FLOOR)/bin/python -m pytest $(FLOOR_PYTEST_ARGS) \
	$$(grep -v -e '^#' -e '^$$' tests/floor.txt); rc=$$?; \
	echo "make test: floor suite (Airflow 3.0.2) took $$(( $$(date +%s) - start ))s"; exit $$rc

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
	/tmp/aep-constraints/bin/pip install --quiet ".[all,test]" $(STACK_PACKAGES)
	/tmp/aep-constraints/bin/pip freeze --exclude airflow-export-providers > constraints.txt

# Regenerate the floor pins (maintainers only): every direct dependency at the lowest version
# pyproject.toml declares, everything else as PyPI had it when Airflow 3.0.2 was released (what a 3.0.2
# deployment runs: later FastAPI/cadwyn releases break its execution API), except the test tools
# (pinned as in constraints.txt), common-compat (our floor is newer than 3.0.2) and what they need.
FLOOR_DATE := 2025-06-16T00:00:00Z
FLOOR_NEWER := apache-airflow-providers-common-compat pytest pytest-timeout pytest-xdist hypothesis moto ruff mypy \
	types-requests pyyaml playwright build uv py-partiql-parser pathspec librt ast-serialize
TEST_TOOLS := pytest|pytest-timeout|pytest-xdist|hypothesis|moto|ruff|mypy|types-requests|pyyaml|playwright|build|uv
constraints-floor: $(VENV)/.installed
	grep -iE '^($(TEST_TOOLS))==' constraints.txt > /tmp/aep-floor-test-pins.txt
	$(BIN)/python tests/support/floors.py > /tmp/aep-floors.txt
	$(UV) pip compile --quiet --python-version 3.11 --resolution lowest-direct --exclude-newer $(FLOOR_DATE) \
	$(foreach p,$(FLOOR_NEWER),--exclude-newer-package $(p)=2100-01-01T00:00:00Z) \
	--extra all --extra test -c /tmp/aep-floor-test-pins.txt -c /tmp/aep-floors.txt pyproject.toml \
	--no-header --annotation-style line -o constraints-floor.txt

clean:
	rm -rf $(VENV) $(FLOOR) $(TOOLS) build dist *.egg-info
