# The two commands a newcomer needs: `make demo` and `make test`.
# Both create .venv when it is missing and install everything vaelab needs.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.vaelab-installed
TORCH_VERSION ?= 2.13.0

.PHONY: demo test bench install clean

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

# PyTorch first, pinned: an unpinned torch (asked for by any other package) would pull the
# registry's newest build with gigabytes of CUDA packages. On a machine without an NVIDIA GPU
# the pinned version resolves to the CPU wheel; pass TORCH_VERSION=... to choose another.
$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --upgrade pip setuptools wheel
	$(PY) -m pip install "torch==$(TORCH_VERSION)"
	$(PY) -m pip install -e ".[test,ray]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/vaelab demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) runs build src/*.egg-info
