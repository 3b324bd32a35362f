# iii-typed — every target creates/uses one virtual environment in .venv (nothing else is needed).
# `make help` lists the targets.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
export PYTHONWARNINGS ?= default

MYPY_TARGETS := iii_typed codegen/iii_codegen tui/iii_tui examples
PYTEST_ARGS  ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  \1\t\2/' | expand -t 18

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python >= 3.11 is required (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[codegen,tui,fast,dev]'
	@touch $(STAMP)

.PHONY: setup
setup: $(STAMP) ## create .venv and install the project with every extra

.PHONY: demo
demo: $(STAMP) ## the main job: engine + example worker + typed caller + catalog
	$(VENV)/bin/iii-typed demo

.PHONY: lint
lint: $(STAMP) ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

.PHONY: fmt
fmt: $(STAMP) ## ruff fix and format
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

.PHONY: typecheck
typecheck: $(STAMP) ## mypy --strict on the packages, the examples and the generated code
	$(VENV)/bin/mypy $(MYPY_TARGETS)

.PHONY: codegen
codegen: $(STAMP) ## regenerate protocol models and example stubs from committed sources
	$(PY) -m iii_codegen protocol
	$(PY) -m iii_codegen catalog-schema
	$(PY) -m iii_codegen generate --snapshot examples/catalog.json --config examples/codegen.toml

.PHONY: codegen-check
codegen-check: $(STAMP) ## fail if any generated file differs from a fresh regeneration
	$(PY) -m iii_codegen protocol --check
	$(PY) -m iii_codegen catalog-schema --check
	$(PY) -m iii_codegen generate --snapshot examples/catalog.json --config examples/codegen.toml --check

.PHONY: catalog
catalog: $(STAMP) ## refresh examples/catalog.json from a live demo engine (engine + examples/orders_worker.py)
	$(PY) -m iii_codegen.demo_catalog -o examples/catalog.json

.PHONY: pytest
pytest: $(STAMP) ## run the test suite only
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: test
test: lint typecheck codegen-check pytest ## everything CI runs: lint, types, drift check, tests

.PHONY: bench
bench: $(STAMP) ## ratio benchmarks (bounded; writes bench/RESULTS.md)
	$(PY) bench/run.py

.PHONY: clean
clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
