# The two set-up commands of the README: `make demo` and `make test`.
# Each creates .venv in the repo if needed, installs the CPU build of torch (pinned in
# requirements/torch.txt only), the packages that ship data without their dependencies
# (requirements/no-deps.txt) and darec itself, then runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.darec-installed

.PHONY: install demo test test-slow lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements/torch.txt requirements/no-deps.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/torch.txt
	$(PY) -m pip install -q --no-deps -r requirements/no-deps.txt
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/darec demo

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy src benchmarks

bench: $(STAMP)
	$(PY) benchmarks/baselines.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
