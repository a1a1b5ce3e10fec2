# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
BACKENDS := tensorflow jax torch
PYTEST_ARGS ?=
# pytest-xdist workers per backend pass (`make test XDIST=0`: serially, in one process).
XDIST ?= 2

.PHONY: install lint format test demo bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch==2.13.0 is the CPU build that lies on local disk here; an unpinned torch may
# pull a multi-GB CUDA build. tensorflow-cpu for the same reason. The pins live here,
# not in pyproject.toml: users elsewhere bring their own torch / tensorflow.
$(VENV)/.installed: $(VENV)/bin/python pyproject.toml
	$(PIP) install -q "torch==2.13.0" "tensorflow-cpu>=2.16" -e ".[jax,audio,signature,index,plots,dev]"
	touch $@

install: $(VENV)/.installed

# The gate CI runs before the tests: lint rules and formatting (pyproject.toml [tool.ruff]).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Rewrites the tree in the project's format and applies the safe lint fixes.
format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Run the suite once per backend, with every docstring example of keras_triplet as a
# doctest (pyproject.toml: testpaths and --doctest-modules); fail if any backend fails
# (but run them all). Every test runs, the slower ones too. Each pass runs on $(XDIST)
# pytest-xdist workers, a whole test file to one worker (--dist loadfile: a module's
# fixtures and compiled functions are built once), the long files first, in the order
# tests/conftest.py gives (LONG_FILES; --no-loadscope-reorder keeps it). `make test
# XDIST=0` runs serially in one process; PYTEST_ARGS adds options
# (`make test XDIST=0 PYTEST_ARGS="-x tests/test_losses.py"`).
XDIST_ARGS := $(if $(filter-out 0,$(XDIST)),-n $(XDIST) --dist loadfile --no-loadscope-reorder)
test: install
	@status=0; for b in $(BACKENDS); do \
	  echo "=== KERAS_BACKEND=$$b"; \
	  KERAS_BACKEND=$$b $(PY) -m pytest -q $(XDIST_ARGS) $(PYTEST_ARGS) || status=1; \
	done; exit $$status

demo: install
	$(PY) -m apps.audio_similarity demo

# Timings: see BENCHMARKS.md. The loss benchmark needs the reference environments
# (tools/make_reference_envs.sh) for the tensorflow-addons / pytorch-metric-learning columns.
bench: install
	$(PY) benchmarks/losses.py --threads 1
	$(PY) benchmarks/sampler.py
	for b in $(BACKENDS); do KERAS_BACKEND=$$b $(PY) benchmarks/training.py; KERAS_BACKEND=$$b $(PY) benchmarks/mining.py; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
