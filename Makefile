# Two commands do all the set-up on a fresh Debian/Ubuntu machine with Python 3.11+:
#   make demo   - install into .venv, write the demo BIDS dataset, run the workflow on it
#   make test   - install into .venv (with test extras), run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(abspath $(VENV))/bin
CORES  ?= 2
export PATH := $(BIN):$(PATH)

.PHONY: demo test lint bench setup system-deps clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	test -f demo/bids/dataset_description.json || bids2hub demo-data demo/bids
	snakemake --cores $(CORES)
	python -m bids2hub.demo_check results

# What the tests need besides Python packages: a real SLURM (slurmctld, slurmd,
# slurmdbd with MariaDB, munge) and Debian's chromium for the browser checks.
# Installs with apt when run as root; otherwise says what is missing.
system-deps:
	tests/system-deps.sh

test: setup system-deps
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
