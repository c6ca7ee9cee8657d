# Two entry points for a fresh machine with Python 3.11: `make repro` and `make test`.
# `make help` lists the others. Every target creates .venv first when it is missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# dvc stages run `python -m ...`: the venv goes first on PATH so that python is the venv's.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help install browser repro repro-full push pull test test-fast lint format exp explore metrics report bench bench-remote bench-readme \
	shell clean-venv

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 16

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first and pinned: a looser spec pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,explore]'
	touch $@

install: $(VENV)/.installed  ## create .venv and install the project

# The explorer's browser test drives Debian's Chromium through its driver. Installed when missing,
# where apt-get is there and we are root; elsewhere the test is skipped and says why.
browser:  ## install Debian's chromium and chromium-driver when missing (root, apt-get)
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium and chromium-driver with apt-get (for tests/test_explore.py)"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends chromium chromium-driver >/dev/null; } \
		|| echo "note: apt-get could not install chromium: the browser test will be skipped"; \
	else echo "note: no chromium/chromedriver (and no apt-get as root): the browser test will be skipped"; fi

# CI passes REPRO_ARGS=--pull: stages that match dvc.lock are restored from the remote, not run.
REPRO_ARGS ?=

repro: install  ## dvc repro (render -> train -> evaluate), then the headline figures (all: dvc metrics show)
	$(BIN)/dvc repro $(REPRO_ARGS)
	$(BIN)/dcign-summary metrics

# The default remote is ../dcign-remote beside the checkout; docs/review.md points it elsewhere.
push: install  ## dvc push --run-cache: outputs and run history to the DVC remote
	$(BIN)/dvc push --run-cache

pull: install  ## dvc pull --run-cache: outputs and run history from the DVC remote
	$(BIN)/dvc pull --run-cache

test: install lint browser  ## ruff and every test (Blender, DVC, DDP, subprocess and browser tests too)
	$(BIN)/python -m pytest -q

test-fast: install  ## the tests not marked slow (under a minute)
	$(BIN)/python -m pytest -q -m "not slow"

lint: install  ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install  ## ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

ARGS ?=

exp: install  ## an experiment: make exp ARGS="-S train.steps=8000 -S train.invariance=0.1"
	$(BIN)/dvc exp run $(ARGS)
	$(BIN)/dcign-summary exp

SEED ?= 0

# The full profile as the experiment full-s$(SEED): params-full.yaml for the run, params.yaml restored
# after it (the results stay in the workspace and in `dvc exp show`; `dvc exp apply full-s0` brings them back).
repro-full: install  ## the full profile (params-full.yaml) as the experiment full-s<SEED>: make repro-full SEED=1
	cp params.yaml .params-default.yaml && cp params-full.yaml params.yaml
	$(BIN)/dvc exp run -n full-s$(SEED) -S seed=$(SEED); rc=$$?; mv .params-default.yaml params.yaml; exit $$rc
	$(BIN)/dcign-summary exp

explore: install  ## the explorer in the browser: make explore ARGS="--checkpoint models/dcign --port 7860"
	$(BIN)/dcign-explore $(ARGS)

metrics: install  ## metrics and params of the workspace against HEAD
	$(BIN)/dvc params diff
	$(BIN)/dvc metrics diff

BASE ?= main

# Markdown review of params/metrics/plots against $(BASE) (CI passes BASE=origin/<base branch>).
report: install  ## report.md against BASE (default main)
	$(BIN)/dcign-report --base $(BASE) --out report.md --plots-dir report_plots

RESULTS := benchmarks/results

# Speed figures: run on an idle machine. Each benchmark writes what it prints to $(RESULTS).
bench: install browser  ## run the benchmarks (idle machine!), then rewrite docs/benchmarks.md's tables
	$(BIN)/python -m benchmarks.render --json $(RESULTS)/render.json
	$(BIN)/python -m benchmarks.train --seconds 8 --json $(RESULTS)/train.json
	$(BIN)/python -m benchmarks.train --seconds 8 --filters 32,32,32 --latent 32 --resolutions 64 \
		--json $(RESULTS)/train-default.json
	$(BIN)/python -m benchmarks.explore --json $(RESULTS)/explore.json
	$(BIN)/python -m benchmarks.readme --results $(RESULTS)

# A fresh clone's full `dvc repro`, then a pull request's `dvc repro --pull` from the remote: ~25 minutes.
bench-remote: install  ## time a pull request's repro with the DVC remote beside the full repro (idle machine!)
	$(BIN)/python -m benchmarks.remote --json $(RESULTS)/remote.json
	$(BIN)/python -m benchmarks.readme --results $(RESULTS)

bench-readme: install  ## rewrite docs/benchmarks.md's tables (and README's remote sentence) from $(RESULTS)/*.json
	$(BIN)/python -m benchmarks.readme --results $(RESULTS)

shell: install  ## a shell with .venv active (dvc and the dcign-* commands on PATH)
	@echo "entering .venv (exit to leave)"; . $(BIN)/activate && exec $${SHELL:-/bin/sh} -i

clean-venv:  ## remove .venv
	rm -rf $(VENV)
