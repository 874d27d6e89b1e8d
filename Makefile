# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint lint-deploy typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dbt-tableau-relay demo

test: $(STAMP) lint lint-deploy typecheck
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

# The Dockerfile and deploy/ (no image is built: no Docker engine needed). The schemas are
# in the packages: nothing is downloaded. Caddy validates with loopback upstreams (its
# health checker starts) and keeps its state in .venv, not in $HOME.
CADDY_SANDBOX := XDG_DATA_HOME=$(VENV)/caddy XDG_CONFIG_HOME=$(VENV)/caddy CADDY_ADMIN=127.0.0.1:0 \
	RELAY_ADDRESS=http://127.0.0.1:1 RELAY_UPSTREAMS='127.0.0.1:1 127.0.0.1:2'
lint-deploy: $(STAMP)
	$(BIN)/hadolint Dockerfile
	$(BIN)/yamllint --strict deploy
	$(BIN)/kubernetes-validate --strict --quiet $(filter-out %/kustomization.yaml,$(wildcard deploy/kubernetes/*.yaml))
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml
	$(BIN)/caddy fmt deploy/Caddyfile | diff -u deploy/Caddyfile -
	$(CADDY_SANDBOX) $(BIN)/caddy validate --adapter caddyfile --config deploy/Caddyfile

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit

# Every figure of docs/benchmarks.md, beside its target and baseline (minutes; not in `test`,
# which runs its quick form: tests/acceptance/test_bench.py).
bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
