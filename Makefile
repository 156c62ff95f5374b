# quote2cash — every target creates or refreshes its own virtualenv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=
TEST_WORKERS ?= 2

.PHONY: help venv browser prometheus demo test test-long lint format bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q -e '.[dev,sandbox]'
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

venv: $(STAMP)  ## create or refresh the virtualenv

demo: $(STAMP)  ## run the demo end to end (q2c demo)
	$(BIN)/q2c demo

browser:  ## Debian's chromium for the console's browser tests (installed when missing, as root)
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium is missing and cannot be installed here: the console's browser tests skip"

prometheus:  ## Debian's prometheus and promtool for the alert-rule and scrape tests (installed when missing, as root)
	@{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	  --no-install-recommends prometheus >/dev/null; } || \
	  echo "prometheus is missing and cannot be installed here: the alert-rule and scrape tests skip"

test: $(STAMP) browser prometheus  ## run the whole test suite (what CI runs), test files spread over TEST_WORKERS processes
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-long: $(STAMP) browser prometheus  ## the long trials: 1,000 kill points per backend, 400 property examples, 300 flow crash trials, 1,000 lifecycles
	Q2C_LONG=1 $(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff (lint + format check) and mypy strict on src/
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

format: $(STAMP)  ## apply ruff's formatting and fixes
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: $(STAMP)  ## the benchmarks in quick mode (figures in docs/benchmarks.md)
	$(BIN)/python benchmarks/engine_throughput.py --quick
	$(BIN)/python benchmarks/audit_checkpoint.py --entries 2000
	$(BIN)/python benchmarks/legacy_erp_files.py --quick

clean:  ## remove the virtualenv and local state
	rm -rf $(VENV) .q2c q2c.sqlite* .pytest_cache .mypy_cache .ruff_cache
