# Two commands for a new user: `make demo` and `make test` (both create .venv on first use).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
BUNDLE_RUN := $(PY) -m monai.bundle run
OUT ?= output

.PHONY: venv demo test test-fast results bench monailabel test-integration clean

$(VENV)/.installed: requirements.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

venv: $(VENV)/.installed

## Main job on the embedded default (synthetic phantom): see README.md
demo: venv
	$(PY) -m bundle.demo --output_dir $(OUT)/demo

## Unit + end-to-end tests (slow ones included, all small), one pytest-xdist worker per core (PYTEST_WORKERS=0: one
## process), each on one thread: most tests start small `python -m monai.bundle` runs, which don't gain from threads
PYTEST_WORKERS ?= auto
PYTEST := OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal
test: venv
	$(PYTEST) tests

test-fast: venv
	$(PYTEST) -m "not slow" tests

## Results table (docs/results.md): every method of configs/baselines/ + CMRDiff on the validation split.
## Train the baselines first, on the guide's data and augmentation and on the MyoPS cases alone (docs/results.md):
##   EXTRA_ARGS='--augment_affine true --extra_train_dir D --extra_train_case_ids [4006,...,4015]' DATASET_DIR=$(MYOPS_DIR) PY=$(PY) bash scripts/train_baselines.sh
##   BASELINES=output/baselines_myops DATASET_DIR=$(MYOPS_DIR) PY=$(PY) bash scripts/train_baselines.sh linear unet_l1 pix2pix
MYOPS_DIR ?= ../shared/data/myops2020
results: venv
	PYTHONPATH=. $(PY) scripts/results.py --dataset_dir $(MYOPS_DIR)

## Benchmarks (bench/results.md): sampling and training speed, memory. Run on an idle machine.
bench: venv
	PYTHONPATH=. $(PY) bench/run_all.py

## Optional MONAI Label environment (own venv, see monailabel_app/README.md): the project's stack, then
## monailabel without its declared deps (they would replace torch), then only what the server needs.
ML_VENV := .venv-monailabel
ML_PY := $(ML_VENV)/bin/python

$(ML_VENV)/.installed: requirements.txt monailabel_app/requirements.txt monailabel_app/requirements-nodeps.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11" >&2; exit 1; }
	test -x $(ML_PY) || $(PYTHON) -m venv $(ML_VENV)
	$(ML_PY) -m pip install -q --upgrade pip
	$(ML_PY) -m pip install -q torch==2.13.0 monai==1.6.1
	$(ML_PY) -m pip install -q -r requirements.txt
	$(ML_PY) -m pip install -q --no-deps -r monailabel_app/requirements-nodeps.txt
	$(ML_PY) -m pip install -q -r monailabel_app/requirements.txt
	$(ML_PY) -c "import monailabel.main, monailabel.interfaces.app, monailabel.tasks.infer.basic_infer, bundle"
	touch $@

monailabel: $(ML_VENV)/.installed

## Integration tests that start a real MONAI Label server (needs `make monailabel`)
test-integration: monailabel
	PATH="$(CURDIR)/$(ML_VENV)/bin:$$PATH" CMRDIFF_REQUIRE_MONAILABEL=1 OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} \
	  $(ML_PY) -m pytest -q -m integration tests/test_monailabel.py

clean:
	rm -rf $(OUT) .pytest_cache
