# Two set-up commands do everything on a fresh machine:
#   make fit    builds the environment if needed and fits the embedded default
#   make test   builds the environment if needed and runs the fast test suite
# CI (.ci/run) runs `make lint` (ruff check, ruff format --check) and then `make test`.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: fit test test-slow lint format env clean-env

fit: $(STAMP)
	$(VENV)/bin/bayes-spill fit

test: $(STAMP)
	$(PY) -m pytest -m "not slow" -q -n 2 --dist loadgroup

test-slow: $(STAMP)
	$(PY) -m pytest -m slow -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

env: $(STAMP)

$(STAMP): pyproject.toml scripts/find_python.sh
	@set -e; PYTHON=$$(sh scripts/find_python.sh); \
	echo "using $$PYTHON ($$($$PYTHON --version))"; \
	[ -x $(PY) ] || $$PYTHON -m venv $(VENV); \
	$(PY) -m pip install -q --upgrade pip; \
	$(PY) -m pip install -q -e ".[test]"; \
	touch $(STAMP)

clean-env:
	rm -rf $(VENV)
