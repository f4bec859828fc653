# hecate-agent developer entry points. Every target bootstraps what it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
SPECS ?= sample-repo

.PHONY: bootstrap demo test lint typecheck unit bench schemas deb deb-check clean

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
	$(PY) bench/render.py
	$(PY) bench/routing.py
	$(PY) bench/apply.py
	$(PY) bench/convergence.py
	$(PY) bench/incremental_plan.py
	$(PY) bench/idle.py
	$(PY) bench/zero_drop.py
	$(PY) bench/fleet.py

schemas: bootstrap
	$(VENV)/bin/hecate-agent schema --output schemas

## Debian package build/hecate-agent_<version>_<arch>.deb for this machine's Debian release and architecture
## (dpkg-deb, python3-venv and PyPI access needed; see packaging/deb/build.sh).
DEB = build/hecate-agent_$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)_$(shell dpkg --print-architecture 2>/dev/null).deb
deb:
	./packaging/deb/build.sh

## Build the .deb, then install, verify, remove and purge it on this machine (root; CI does this).
deb-check: deb
	./packaging/deb/check.sh $(DEB)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis bench/.work
