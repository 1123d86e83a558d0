# Set-up, demo and tests on a fresh machine. `make demo` and `make test` each set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

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
	# Real MOFs' building units (docs/real_mofs.md): mofstructure declares openbabel-wheel==3.1.1.22 against the
	# project's .23 (UFF data); its cutting and net code never imports openbabel, so its declared dependencies are skipped.
	$(BIN)/python -m pip install --quiet --no-deps mofstructure==0.1.9.1
	touch $(STAMP)

# The quickstart campaign: diffusion-generator proposals (the shipped generator), GNN surrogate, BoTorch, the
# oracle (EQeq charges, energy-grid Widom validated against RASPA3), on local Ray; state in runs/quickstart-TIME, tracking in ./mlruns. Ray runs with token
# authentication (agents/runtime.py): a local instance uses ~/.ray/auth_token, created owner-only when missing.
demo: venv
	$(BIN)/discovery run configs/quickstart.yaml

test: venv
	$(BIN)/pytest -q

test-slow: venv
	$(BIN)/pytest -q -m slow

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
