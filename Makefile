# mtl_diffusion: `make figures` regenerates every figure, `make test` runs every test.
# Both create the environment (.venv) on first use.
# GPU users: `make setup TORCH="torch==<version>"` (plus PIP_EXTRA_INDEX_URL for a CUDA build).

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NOTEBOOKS ?=
# One BLAS/OpenMP thread per process: the cores are used by running JOBS notebooks at once and
# by parallel training workers; two threads per process on a loaded 2-core machine stall badly.
THREADS ?= 1
JOBS   ?= 2
export OMP_NUM_THREADS := $(THREADS)
export MKL_NUM_THREADS := $(THREADS)
export OPENBLAS_NUM_THREADS := $(THREADS)
export MPLBACKEND := Agg

.PHONY: setup test unit nbval figures notebooks lab bench clean distclean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

test: unit nbval

unit: $(STAMP)
	$(PY) -m pytest -q tests

# Every notebook under smoke (digits) and under paper-smoke (the paper profile's image-folder
# path with tiny models, on a folder of coloured digits made offline).
EXAMPLE_IMAGES := $(CURDIR)/build/example_images

nbval: $(STAMP)
	test -d $(EXAMPLE_IMAGES) || $(PY) -m mtl_diffusion.example_folder $(EXAMPLE_IMAGES)
	$(PY) -m mtl_diffusion.run_notebooks --profile smoke --prepare-only $(NOTEBOOKS)
	$(PY) -m mtl_diffusion.run_notebooks --profile paper-smoke --prepare-only $(NOTEBOOKS) \
		-p config_overrides "data.path=$(EXAMPLE_IMAGES)"
	$(PY) -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env \
		build/notebooks/smoke/*.ipynb build/notebooks/paper-smoke/*.ipynb

figures: $(STAMP)
	$(PY) -m mtl_diffusion.run_notebooks --profile cpu --jobs $(JOBS) --publish $(NOTEBOOKS)

notebooks: $(STAMP)
	$(VENV)/bin/jupytext --to ipynb notebooks/*.py
	@echo "Open them with: make lab"

lab: notebooks
	$(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf build artifacts/smoke artifacts/paper-smoke .pytest_cache notebooks/*.ipynb
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf artifacts $(VENV) *.egg-info
