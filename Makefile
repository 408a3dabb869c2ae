# Two entry points: `make demo` runs the main job on embedded defaults, `make test` runs the tests
# (`make unit` is the fast loop while editing: lint, types and the unit tests only).
# All create the virtual environment (.venv) when it is missing or out of date: when pyproject.toml or
# constraints.txt is newer than its stamp.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# What a first install takes (6.8 GB measured, with some room), checked before pip starts.
VENV_NEEDS_KB := 7500000

.PHONY: venv serving-env test unit lint typecheck services demo bench check-resolution clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@# torch's CUDA build alone is over 5 GB: say so at once rather than fail half-way with ENOSPC.
	@ls -d $(VENV)/lib/python3*/site-packages/torch >/dev/null 2>&1 || { \
	  free_kb=$$(df -Pk $(VENV) | awk 'NR==2 {print $$4}'); \
	  if [ "$$free_kb" -lt $(VENV_NEEDS_KB) ]; then \
	    echo "error: installing into $(VENV) needs about 7 GB of free disk; $$((free_kb / 1048576)) GB is free" \
	         "on $$(df -P $(VENV) | awk 'NR==2 {print $$6}'). Free some space and run make again." >&2; \
	    exit 1; fi; }
	@echo "installing ipa-airflow and its pinned dependencies into $(VENV) (first time: several minutes)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[all,test]'
	@touch $(STAMP)

venv: $(STAMP)

# The model server (MLServer + its MLflow runtime) in an environment of its own: it requires FastAPI < 0.116,
# which Airflow's cannot share. The same pins as the model-server image (docker/model-server/); the
# integration test of the real server, `ipa profile --served` and `ipa live` start MLServer from here.
SERVE_VENV := .venv-serve
SERVE_STAMP := $(SERVE_VENV)/.installed
SERVE_REQS := docker/model-server/requirements.txt docker/model-server/constraints.txt

$(SERVE_STAMP): $(SERVE_REQS)
	@test -x $(SERVE_VENV)/bin/python || $(PY) -m venv $(SERVE_VENV)
	@ls -d $(SERVE_VENV)/lib/python3*/site-packages/torch >/dev/null 2>&1 || { \
	  free_kb=$$(df -Pk $(SERVE_VENV) | awk 'NR==2 {print $$4}'); \
	  if [ "$$free_kb" -lt $(VENV_NEEDS_KB) ]; then \
	    echo "error: installing the model server into $(SERVE_VENV) needs about 7 GB of free disk; $$((free_kb / 1048576)) GB is free." \
	         "Free some space and run make again." >&2; \
	    exit 1; fi; }
	@echo "installing MLServer and its pinned runtime into $(SERVE_VENV) (first time: a few minutes)"
	$(SERVE_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
	  -c docker/model-server/constraints.txt -r docker/model-server/requirements.txt
	@touch $(SERVE_STAMP)

serving-env: $(SERVE_STAMP)

lint: venv
	$(BIN)/ruff check ipa_airflow operators dags tests tools
	$(BIN)/ruff format --check ipa_airflow operators dags tests tools

# The engine's types: mypy on ipa_airflow/, configured in pyproject.toml ([tool.mypy]).
typecheck: venv
	$(BIN)/mypy

# The integration tests run the real Prometheus server and render the Airflow view in headless Chromium
# (Debian's packages; `ipa ui screenshot` uses the same browser); install them when missing.
services:
	@command -v prometheus >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's prometheus package for the integration tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  else echo "prometheus is not installed and cannot be installed here: its tests will be skipped"; fi; }
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium package for the browser test of the Airflow view"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	  else echo "chromium is not installed and cannot be installed here: the browser test will be skipped"; fi; }

test: lint typecheck services serving-env
	$(BIN)/python -m pytest

unit: lint typecheck
	$(BIN)/python -m pytest -q tests/unit

demo: venv
	$(BIN)/ipa demo --end-to-end

bench: venv
	$(BIN)/ipa bench solver --json
	$(BIN)/ipa bench solver --accuracy product --json
	$(BIN)/python -m pytest -q -m benchmark tests/benchmarks

# pyproject.toml declares ranges, constraints.txt the pinned set the venv and `make test` use. This
# resolves the ranges beside other Airflow, pydantic and numpy versions (pip's dry run against the package
# index, about a minute per combination), so it is not part of `make test`.
check-resolution: venv
	$(BIN)/python tools/check_resolution.py

clean:
	rm -rf $(VENV) $(SERVE_VENV) .ipa .pytest_cache .ruff_cache .mypy_cache .hypothesis
