# hecate-agent developer entry points. Every target bootstraps what it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
SPECS ?= sample-repo

.PHONY: bootstrap demo test lint typecheck unit bench schemas clean

bootstrap:
	@./scripts/bootstrap

## The agent's main job: the daemon syncs a Git repo made from sample-repo/ to a local Caddy and Nginx (loopback).
demo: bootstrap
	$(VENV)/bin/hecate-agent validate $(SPECS)
	$(PY) scripts/demo.py

## Everything CI runs: lint, types, and the whole test suite (unit, integration, e2e).
test: bootstrap lint typecheck
	$(PY) -m pytest -q tests

lint: bootstrap
	$(VENV)/bin/ruff check hecate_agent tests bench scripts
	$(VENV)/bin/ruff format --check hecate_agent

typecheck: bootstrap
	$(VENV)/bin/mypy hecate_agent

unit: bootstrap
	$(PY) -m pytest -q tests/unit

bench: bootstrap
	$(PY) bench/validate.py
	$(PY) bench/apply.py
	$(PY) bench/convergence.py
	$(PY) bench/incremental_plan.py
	$(PY) bench/idle.py
	$(PY) bench/zero_drop.py
	$(PY) bench/fleet.py

schemas: bootstrap
	$(VENV)/bin/hecate-agent schema --output schemas

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis bench/.work
