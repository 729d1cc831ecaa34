# make install : a virtual environment in .venv with the package (what running needs)
# make test    : the test tools too, then the whole suite, then the parity and
#               self-consistency tests again under another OpenBLAS kernel
# make bench   : speed and memory on the shared corpus (prints, asserts nothing)
# make soak    : ten minutes of hostile inputs; prints cases tried, tracebacks,
#               hangs and peak memory (make test runs 20 s of it)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TESTS  := $(VENV)/.installed-test

.PHONY: install test bench soak clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $(STAMP)

$(TESTS): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(TESTS)

test: $(TESTS)
	$(PY) -m pytest -q
	@echo "again with another BLAS kernel (OPENBLAS_CORETYPE=Sandybridge): our bits must not depend on it"
	OPENBLAS_CORETYPE=Sandybridge $(PY) -m pytest -q -p no:cacheprovider tests/detector/test_parity.py \
		tests/detector/test_layers.py tests/detector/test_kernels.py tests/detector/test_cascade.py tests/detector/test_pyramid.py

bench: $(STAMP)
	OPENBLAS_NUM_THREADS=1 $(PY) benchmarks/bench.py

soak: $(TESTS)
	$(PY) -m tests.soak --seconds $${SOAK_SECONDS:-600}

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
