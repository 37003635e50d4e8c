# brainpipe: the two commands of the README, plus helpers. Everything runs inside ./.venv.
#   make run    create the environment, install brainpipe, run the default study with snakemake
#   make test   create the environment if needed, run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0
SNAKEMAKE_ARGS ?=

.PHONY: setup run test lint format report clean config-docs

$(BIN)/.brainpipe-installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: a bare "torch" requirement would pull a multi-GB CUDA build
	$(BIN)/python -m pip install --quiet "$(TORCH_PIN)"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/.brainpipe-installed

run: setup
	$(BIN)/snakemake $(SNAKEMAKE_ARGS)

# two processes (pytest-xdist), each taking whole test files, so module fixtures such as the tiny real run run once
test: setup
	$(BIN)/python -m pytest -n 2 --dist loadfile

lint: setup
	$(BIN)/ruff check src tests workflow/scripts bench
	$(BIN)/ruff format --check src tests workflow/scripts bench
	$(BIN)/snakefmt --check Snakefile workflow
	$(BIN)/snakemake --lint

format: setup
	$(BIN)/ruff check --fix src tests workflow/scripts bench
	$(BIN)/ruff format src tests workflow/scripts bench
	$(BIN)/snakefmt Snakefile workflow

report: setup
	$(BIN)/brainpipe report

# config/README.md is generated from the schemas' descriptions and the simulators' parameter docstrings
config-docs: setup
	$(BIN)/brainpipe config-docs

clean:
	rm -rf results logs benchmarks .snakemake
