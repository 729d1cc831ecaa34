# make install : a virtual environment in .venv with the package and its test tools
# make test    : the whole suite (installs first when needed), then the parity and
#               self-consistency tests again under another OpenBLAS kernel
# make bench   : speed and memory on the shared corpus (prints, asserts nothing)
# make soak    : ten minutes of hostile inputs (issue 11); prints cases tried,
#               tracebacks, hangs and peak memory (make test runs 20 s of it)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test bench soak clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q
	@echo "again with another BLAS kernel (OPENBLAS_CORETYPE=Sandybridge): our bits must not depend on it"
	OPENBLAS_CORETYPE=Sandybridge $(PY) -m pytest -q -p no:cacheprovider tests/test_parity.py \
		tests/test_layers.py tests/test_kernels.py tests/test_cascade.py tests/test_pyramid.py

bench: $(STAMP)
	OPENBLAS_NUM_THREADS=1 $(PY) -m mtcnn_cli.bench

soak: $(STAMP)
	$(PY) -m tests.soak --seconds $${SOAK_SECONDS:-600}

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
