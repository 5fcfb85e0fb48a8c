# Two commands for a new user: `make demo` and `make test` (both create .venv on first use).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
BUNDLE_RUN := $(PY) -m monai.bundle run
OUT ?= output

.PHONY: venv demo test test-fast clean

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

## Unit + end-to-end tests (slow ones included, all small)
test: venv
	$(PY) -m pytest -q tests

test-fast: venv
	$(PY) -m pytest -q -m "not slow" tests

clean:
	rm -rf $(OUT) .pytest_cache
