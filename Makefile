# Two set-up commands do everything on a fresh machine:
#   make fit    builds the environment if needed and fits the embedded default
#   make test   builds the environment if needed and runs the fast test suite
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: fit test test-slow env clean-env

fit: $(STAMP)
	$(VENV)/bin/bayes-spill fit

test: $(STAMP)
	$(PY) -m pytest -m "not slow" -q

test-slow: $(STAMP)
	$(PY) -m pytest -m slow -q

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
