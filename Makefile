# Two commands on a fresh machine (each creates .venv on first use):
#   make train   -> python train.py on its default experiment (Deoxys, offline W&B)
#   make test    -> the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned for the set-up only: on a CPU-only machine with the local wheel this is the
# CPU build; elsewhere pip takes PyPI's build of the same release (CUDA on Linux x86_64).
TORCH_SPEC ?= torch==2.13.0
ARGS ?=

.PHONY: setup train test lint bench study clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

train: setup
	$(PY) train.py $(ARGS)

test: setup
	$(PY) -m pytest $(ARGS)

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# The benchmark suite (about 2 hours on 2 cores; ARGS="--quick", "--only NAME ...", "--check-only"),
# then the results pages built from what it stored (exit status: the suite's).
bench: setup
	$(PY) bench/suite.py $(ARGS); status=$$?; $(PY) bench/report.py --out outputs/results && exit $$status

# A research study (not a goal), e.g. make study STUDY=cloudformer_appval ARGS="--variants ridge_span base"
STUDY ?= cloudformer_appval
study: setup
	OMP_NUM_THREADS=1 $(PY) studies/$(STUDY).py $(ARGS)

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
