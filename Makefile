# Two commands matter: `make demo` (install and run the demo) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
EXTRAS ?= dev,bench,plot,eval,tensorboard
export FSDD_ROOT ?= $(abspath ../shared/data/fsdd/recordings)

.PHONY: install test test-all fuzz lint bench bench-quick demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

test: install
	$(PY) -m pytest -q -m "not slow"

test-all: install
	$(PY) -m pytest -q

fuzz: install   # 20x the fuzz examples CI runs, drawn afresh (a few minutes)
	FUZZ_SCALE=$${FUZZ_SCALE:-20} $(PY) -m pytest -q tests/test_codes_file.py tests/models/test_model_loading.py -k fuzz

lint: install
	$(VENV)/bin/ruff check codec tests scripts recipes
	$(VENV)/bin/ruff format --check codec tests scripts recipes

bench: install
	$(PY) scripts/bench/bench_all.py

bench-quick: install
	$(PY) scripts/bench/bench_all.py --quick --output BENCHMARKS-quick.md

demo: install
	bash recipes/demo/run.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
