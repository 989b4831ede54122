# Set-up and checks. Every target creates or reuses the virtual environment itself.
# The environment is cached outside the checkout (torch's CUDA build is ~5.6 GB) and
# re-synchronised whenever pyproject.toml changes.
PYTHON ?= python3
VENV ?= $(HOME)/.cache/lightly-krepes/venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stamp-$(shell cat pyproject.toml | sha1sum | cut -c1-16)
# The checkout always wins over whatever checkout the shared venv was installed from.
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))
SOURCES := lightly_krepes tests $(wildcard benchmarks examples docs)

.PHONY: venv demo test lint typecheck unit bench format clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	@rm -f $(VENV)/.stamp-*
	@touch $@

demo: venv
	$(PY) -m lightly_krepes.demo

lint: venv
	$(PY) -m ruff check $(SOURCES)
	$(PY) -m ruff format --check $(SOURCES)

typecheck: venv
	$(PY) -m mypy

unit: venv
	$(PY) -m pytest -q $(PYTEST_ARGS)

test: lint typecheck unit

format: venv
	$(PY) -m ruff format $(SOURCES)
	$(PY) -m ruff check --fix $(SOURCES)

bench: venv
	$(PY) benchmarks/kernel_engine.py

clean-venv:
	rm -rf $(VENV)
