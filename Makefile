# Two entry points for a fresh machine with Python 3.11: `make repro` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# dvc stages call the console scripts (dcign-render, ...), so the venv goes first on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install repro test lint format report clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first and pinned: a looser spec pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

repro: install
	$(BIN)/dvc repro
	$(BIN)/dvc metrics show

test: install lint
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

BASE ?= main

# Markdown review of params/metrics/plots against $(BASE) (CI passes BASE=origin/<base branch>).
report: install
	$(BIN)/dcign-report --base $(BASE) --out report.md --plots-dir report_plots

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean-venv:
	rm -rf $(VENV)
