# Set-up, demo and tests on a fresh machine. `make demo` and `make test` each set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= data/demo-dataset

.PHONY: venv demo test test-slow clean

venv: $(STAMP)

# torch is installed first and pinned: an unpinned resolve would pull several GB of CUDA packages.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# EQeq charges: pyeqeq is source-only and builds only against pybind11 < 3, outside build isolation.
	$(BIN)/python -m pip install --quiet 'pybind11<3'
	$(BIN)/python -m pip install --quiet --no-build-isolation pyeqeq==0.0.10
	touch $(STAMP)

demo: venv
	$(BIN)/discovery dataset build --size 24 --seed 0 --out $(DEMO_DIR)
	$(BIN)/python -c "import pandas as pd; t = pd.read_csv('$(DEMO_DIR)/mofs.csv'); \
	print(t[['id', 'formula', 'n_atoms', 'lcd', 'pld', 'asa_m2_g', 'density_g_cm3']].to_string(index=False))"

test: venv
	$(BIN)/pytest -q

test-slow: venv
	$(BIN)/pytest -q -m slow

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
