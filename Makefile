# hecate-agent developer entry points. Every target bootstraps what it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
SPECS ?= sample-repo

.PHONY: bootstrap demo test lint typecheck unit bench schemas clean

bootstrap:
	@./scripts/bootstrap

# The demo's Authentik outpost (the sample's config.yaml reads it from the environment).
export AUTHENTIK_OUTPOST_URL ?= http://127.0.0.1:9000

## The agent's main job on the sample repo (today: validate it and render both proxies' config; see README).
demo: bootstrap
	$(VENV)/bin/hecate-agent validate $(SPECS)
	$(VENV)/bin/hecate-agent render $(SPECS) --target caddy --output build/demo/caddy
	$(VENV)/bin/hecate-agent render $(SPECS) --target nginx --output build/demo/nginx

## Everything CI runs: lint, types, and the whole test suite (unit, integration, e2e).
test: bootstrap lint typecheck
	$(PY) -m pytest -q tests

lint: bootstrap
	$(VENV)/bin/ruff check hecate_agent tests bench
	$(VENV)/bin/ruff format --check hecate_agent

typecheck: bootstrap
	$(VENV)/bin/mypy hecate_agent

unit: bootstrap
	$(PY) -m pytest -q tests/unit

bench: bootstrap
	$(PY) bench/validate.py

schemas: bootstrap
	$(VENV)/bin/hecate-agent schema --output schemas

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis bench/.work
