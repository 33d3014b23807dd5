# camcli — make help lists the targets. Everything runs inside .venv, created on first use.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
OUT     ?= out

.PHONY: help install dev run test test-slow lint docs bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed  ## create .venv and install camcli

dev: $(VENV)/.installed-dev  ## install camcli with test, bench and lint extras

run: $(VENV)/.installed  ## Grad-CAM overlays for sample_images/ into out/ (offline, bundled model)
	$(BIN)/camcli gradcam sample_images --out $(OUT)/

test: $(VENV)/.installed-dev  ## run the test suite (offline, CPU, a few minutes; the slow checks: make test-slow)
	$(BIN)/python -m pytest -m "not slow"

test-slow: $(VENV)/.installed-dev  ## the slow checks: every README and docs/ example, long property and batch runs
	$(BIN)/python -m pytest -m slow

lint: $(VENV)/.installed-dev  ## ruff, mypy and the import contracts (import-linter)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

docs: $(VENV)/.installed-dev  ## the documentation site from docs/ into site/ (offline; open site/index.html)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

bench: $(VENV)/.installed-dev  ## timing ratios against a no-grad forward and the peer libraries
	$(BIN)/python bench/bench.py

clean:  ## remove outputs and caches (keeps .venv)
	rm -rf $(OUT) site bench_out .pytest_cache .mypy_cache .ruff_cache
