# Cadence — `make help` lists the targets. Every target installs what it needs
# first (uv, then the locked environment in .venv), so a fresh clone works.
.DEFAULT_GOAL := help
SHELL := /bin/bash
UV_VERSION := 0.13.8
PY ?= python3
UV := $(PY) -m uv

.PHONY: help install demo test lint lint-imports typecheck bench jupyter clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: ## Install uv (pinned) and the locked environment into .venv
	@$(PY) -m uv --version 2>/dev/null | grep -q "$(UV_VERSION)" || $(PY) -m pip install --quiet "uv==$(UV_VERSION)"
	@$(UV) sync --frozen
	@$(UV) run --frozen nbstripout --install --attributes .gitattributes >/dev/null 2>&1 || true

demo: install ## Install, then run `cadence demo` on a freshly generated shop
	$(UV) run --frozen cadence demo

test: install ## Install, then check the layer contracts and run the test suite
	$(UV) run --frozen lint-imports
	$(UV) run --frozen pytest -n 2 -q

lint-imports: install ## Check the one-way layer contracts (ARCHITECTURE.md)
	$(UV) run --frozen lint-imports

lint: install ## Ruff lint
	$(UV) run --frozen ruff check src tests benchmarks

typecheck: install ## mypy over the package
	$(UV) run --frozen mypy

bench: install ## Benchmarks (slow; results go to benchmarks/RESULTS.md by hand)
	$(UV) run --frozen python benchmarks/bench_generate.py

jupyter: install ## Open JupyterLab with the project's environment as kernel
	$(UV) run --frozen jupyter lab

clean: ## Remove generated data, runs and reports (keeps data/external)
	rm -rf data/raw/* data/interim/* data/processed/* mlruns mlflow.db reports/*.html
