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

.PHONY: setup train test lint bench clean

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

bench: setup
	$(PY) bench/train_wallclock.py && $(PY) bench/deoxys_quality.py && $(PY) bench/deoxys_fit_time.py \
		&& $(PY) bench/serving_speed.py && $(PY) bench/serving_speed.py --router least_outstanding \
		&& $(PY) bench/serving_fidelity.py && $(PY) bench/continuum.py \
		&& $(PY) bench/vm2rl_env_speed.py && $(PY) bench/vm2rl_quality.py \
		&& $(PY) bench/vm2rl_train_wallclock.py && $(PY) bench/vm2rl_maskable_ppo.py \
		&& $(PY) bench/cloudformer_quality.py && $(PY) bench/cloudformer_quality.py --cv --jobs 2 logger=none \
		&& $(PY) bench/cloudformer_throughput.py && $(PY) bench/cloudformer_throughput.py --threads 1 \
		&& $(PY) bench/report.py

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
