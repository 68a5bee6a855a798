# The quick start is `make demo` then `make test`; both set up .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint bench ui clean

# torch first, from this machine's CPU wheel: a bare `torch` requirement would pull a multi-GB
# CUDA build. Then the project, which pins the same torch and so installs no other.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tuneforge search rf-digits --algo random --trials 20 --seed 0

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check tuneforge tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/overhead.py

ui: $(STAMP)
	$(BIN)/tuneforge server

clean:
	rm -rf $(VENV) ray_results mlflow.db mlruns
