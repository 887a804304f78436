# Two commands matter: `make demo` (install and run the demo) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# make test installs the test, reference, benchmark and browser extras (the browser tests also
# need Debian's chromium: .ci/run installs it); make demo only what it needs
# (matplotlib for its spectrograms; DEMO_EXTRAS=plot,eval adds PESQ and STOI to its report, but
# pesq builds from source)
TEST_EXTRAS ?= dev,reference,bench,plot,eval,tensorboard,onnx,browser
DEMO_EXTRAS ?= plot
export FSDD_ROOT ?= $(abspath ../shared/data/fsdd/recordings)

.PHONY: install install-demo test test-all fuzz lint bench bench-quick demo clean

install: $(VENV)/.installed-test
install-demo: $(VENV)/.installed-demo

# test also installs DAC's reference model for the DAC import tests, without its dependency
# tree (audiotools would downgrade protobuf to 3.19 and bring ~50 packages; the model needs none)
$(VENV)/.installed-%: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(if $(filter test,$*),$(TEST_EXTRAS),$(DEMO_EXTRAS))]"
	$(if $(filter test,$*),$(PY) -m pip install -q --no-deps descript-audio-codec==1.0.0)
	touch $@

test: install
	$(PY) -m pytest -q -m "not slow"

test-all: install
	$(PY) -m pytest -q

fuzz: install   # 20x the fuzz examples CI runs, drawn afresh (a few minutes)
	FUZZ_SCALE=$${FUZZ_SCALE:-20} $(PY) -m pytest -q tests -k fuzz

lint: install
	$(VENV)/bin/ruff check codec tests scripts recipes
	$(VENV)/bin/ruff format --check codec tests scripts recipes

# ISA=avx2 holds PyTorch, oneDNN and MKL to AVX2 kernels: an AVX2-only CPU's figures measured on
# an AVX-512 machine (bf16 then runs emulated); the benchmark header names the ISA. bench writes
# BENCHMARKS.md where the kernels are AVX-512 and BENCHMARKS-avx2.md where they are AVX2.
ISA_ENV := $(if $(filter avx2,$(ISA)),ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2)

bench: install
	$(ISA_ENV) $(PY) scripts/bench/bench_all.py

bench-quick: install
	$(ISA_ENV) $(PY) scripts/bench/bench_all.py --quick

demo: install-demo
	PY=$(PY) bash recipes/demo/run.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
