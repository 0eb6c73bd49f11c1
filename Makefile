# Two commands do all the set-up on a fresh Debian/Ubuntu machine with Python 3.11+:
#   make demo   - install into .venv, write the demo BIDS dataset, run the workflow on it
#   make test   - install into .venv (with test extras), run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(abspath $(VENV))/bin
CORES  ?= 2
export PATH := $(BIN):$(PATH)

.PHONY: demo test lint bench setup system-deps clean viewer-assets

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed viewer-assets

demo: setup
	test -f demo/bids/dataset_description.json || bids2hub demo-data demo/bids
	snakemake --cores $(CORES)
	python -m bids2hub.demo.check results

# The NiiVue bundle inlined into paper/viewer.html: the version pinned (with integrity
# hashes) in envs/niivue/package-lock.json, installed by npm ci without running package
# scripts, copied next to the package and checked against data/niivue.json's sha256.
NIIVUE_ENV := envs/niivue
NIIVUE_MANIFEST := workflow/bids2hub/data/niivue.json
NIIVUE_JS := workflow/bids2hub/data/vendor/niivue.umd.js

viewer-assets: $(NIIVUE_JS)

$(NIIVUE_JS): $(NIIVUE_ENV)/package.json $(NIIVUE_ENV)/package-lock.json $(NIIVUE_MANIFEST)
	@command -v npm >/dev/null || { echo "viewer-assets: npm not found; install Node.js with npm (Debian: apt-get install nodejs npm, or run tests/system-deps.sh)" >&2; exit 1; }
	cd $(NIIVUE_ENV) && npm ci --ignore-scripts --no-audit --no-fund --omit=optional --prefer-offline --loglevel=error
	mkdir -p $(dir $@)
	cp $(NIIVUE_ENV)/node_modules/@niivue/niivue/$$(sed -n 's/.*"source": "\(.*\)".*/\1/p' $(NIIVUE_MANIFEST)) $@.tmp
	echo "$$(sed -n 's/.*"sha256": "\([0-9a-f]*\)".*/\1/p' $(NIIVUE_MANIFEST))  $@.tmp" | sha256sum -c --quiet
	mv $@.tmp $@

# What the tests need besides Python packages: a real SLURM (slurmctld, slurmd,
# slurmdbd with MariaDB, munge) and Debian's chromium for the browser checks.
# Installs with apt when run as root; otherwise says what is missing.
system-deps:
	tests/system-deps.sh

test: system-deps setup
	python -m pytest -ra

lint: setup
	ruff check workflow tests
	ruff format --check workflow tests
	snakefmt --check workflow
	snakemake --lint --cores 1

bench: setup
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	python tests/benchmarks/bench_shards.py
	python tests/benchmarks/bench_index.py
	python tests/benchmarks/bench_prepare_dwi.py
	python tests/benchmarks/bench_validation.py
	python tests/benchmarks/bench_workflow.py

clean:
	rm -rf results demo .snakemake
