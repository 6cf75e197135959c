# The two commands a newcomer needs: `make demo` and `make test`.
# Both create .venv when it is missing and install everything vaelab needs.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.vaelab-installed
TORCH_VERSION ?= 2.13.0

.PHONY: demo test docs gpu-check bench bench-env install clean

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

# PyTorch first, pinned: an unpinned torch (asked for by any other package) would pull the
# registry's newest build with gigabytes of CUDA packages. On a machine without an NVIDIA GPU
# the pinned version resolves to the CPU wheel; pass TORCH_VERSION=... to choose another.
$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --upgrade pip setuptools wheel
	$(PY) -m pip install "torch==$(TORCH_VERSION)"
	$(PY) -m pip install -e ".[test,ray,tensorboard,mlflow,docs]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/vaelab demo

# Two pytest-xdist workers. --dist loadgroup: each test file's tests go to one worker (tests/conftest.py
# groups them, so a module's fixtures, such as a trained run or a Ray runtime, are built once), but
# the tests of the few files that share no fixture (conftest.SPREAD) go one by one to whichever
# worker is free; --no-loadscope-reorder keeps conftest.HEAVY_FIRST's order (slowest files first)
# where xdist would otherwise order the files by their number of tests. On the 2-core machines the
# suite takes about 0.7 of its time in one process. `make test PYTEST_ARGS=` runs it in one process.
PYTEST_ARGS ?= -n 2 --dist loadgroup --no-loadscope-reorder
test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# `make docs`: the static site of README.md and docs/ in site/ (open site/index.html); --strict
# fails the build on a broken link, a missing anchor or a page left out of mkdocs.yml's nav.
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

# `make gpu-check`: on a machine with an NVIDIA GPU, the whole suite on every core (device auto →
# CUDA) and the benchmarks with --device cuda (issue 16's targets), ending in one table
# (gpu-check.md); each step is stopped before the whole passes about 9 minutes, and
# `make gpu-check GPU_CHECK_ARGS="--only suite"` (or `--only benches`) runs one half. Without CUDA
# it says so in one line and exits 2. `make gpu-check PYTHON=python3` uses
# that Python as it is (a CUDA PyTorch and the scientific stack already there, vaelab from src/,
# nothing installed) and names in one line any package it lacks.
ifeq ($(origin PYTHON),file)
gpu-check: $(STAMP)
	$(PY) bench/gpu_check.py $(GPU_CHECK_ARGS)
else
gpu-check:
	PYTHONPATH=src$${PYTHONPATH:+:$$PYTHONPATH} $(PYTHON) bench/gpu_check.py $(GPU_CHECK_ARGS)
endif

# `make bench`: every benchmark in bench/ (bench/all.py runs them and prints one table).
# It first builds the pythae environment (bench-env); `make bench PYTHAE_ENV=` skips that (then
# the pythae row says the environment is missing). `make bench BENCH_ARGS=--quick`: smoke sizes.
PYTHAE_ENV ?= bench-env
bench: $(STAMP) $(PYTHAE_ENV)
	$(PY) bench/all.py $(BENCH_ARGS)

# bench/.venv-pythae: pythae 0.1.2 for bench/pythae_compare.py, apart from vaelab's environment.
# The same pinned torch first (an unpinned one would pull gigabytes of CUDA packages), then pythae
# with torch pinned again on the same command line, so pip cannot replace it; the last line checks
# it did not. The stamp makes a second `make bench-env` a no-op.
BENCH_VENV := bench/.venv-pythae
BENCH_STAMP := $(BENCH_VENV)/.pythae-installed
PYTHAE_VERSION ?= 0.1.2

bench-env: $(BENCH_STAMP)

$(BENCH_STAMP):
	rm -rf $(BENCH_VENV)
	$(PYTHON) -m venv $(BENCH_VENV) || python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --upgrade pip setuptools wheel
	$(BENCH_VENV)/bin/python -m pip install "torch==$(TORCH_VERSION)"
	$(BENCH_VENV)/bin/python -m pip install "torch==$(TORCH_VERSION)" "pythae==$(PYTHAE_VERSION)"
	$(BENCH_VENV)/bin/python -m pip check
	$(BENCH_VENV)/bin/python -c "import torch, pythae.models, importlib.metadata as m; assert torch.__version__.split('+')[0] == '$(TORCH_VERSION)', torch.__version__; print('pythae', m.version('pythae'), 'torch', torch.__version__)"
	touch $(BENCH_STAMP)

clean:
	rm -rf $(VENV) $(BENCH_VENV) runs build site src/*.egg-info
