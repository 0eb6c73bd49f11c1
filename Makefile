# Two commands do all the set-up on a fresh Debian/Ubuntu machine with Python 3.11+:
#   make demo   - install into .venv, write the demo BIDS dataset, run the workflow on it
#   make test   - install into .venv (with test extras), run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(abspath $(VENV))/bin
CORES  ?= 2
export PATH := $(BIN):$(PATH)

.PHONY: demo test lint bench setup system-deps clean niivue-update conda-env

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	test -f demo/bids/dataset_description.json || bids2hub demo-data demo/bids
	snakemake --cores $(CORES)
	python -m bids2hub.demo.check results

# The NiiVue bundle inlined into paper/viewer.html is committed (with its licenses) under
# workflow/bids2hub/data/vendor/ and ships in the package: no npm at set-up or run time.
# Maintainers refresh it from the release pinned (with integrity hashes) in
# envs/niivue/package-lock.json: npm ci without package scripts, then the copy is checked
# against data/niivue.json's sha256 (update niivue.json first when moving to a new release).
NIIVUE_ENV := envs/niivue
NIIVUE_MANIFEST := workflow/bids2hub/data/niivue.json
NIIVUE_JS := workflow/bids2hub/data/vendor/niivue.umd.js

niivue-update:
	@command -v npm >/dev/null || { echo "niivue-update: npm not found; install Node.js with npm (Debian: apt-get install nodejs npm)" >&2; exit 1; }
	cd $(NIIVUE_ENV) && npm ci --ignore-scripts --no-audit --no-fund --omit=optional --prefer-offline --loglevel=error
	cp $(NIIVUE_ENV)/node_modules/@niivue/niivue/$$(sed -n 's/.*"source": "\(.*\)".*/\1/p' $(NIIVUE_MANIFEST)) $(NIIVUE_JS).tmp
	echo "$$(sed -n 's/.*"sha256": "\([0-9a-f]*\)".*/\1/p' $(NIIVUE_MANIFEST))  $(NIIVUE_JS).tmp" | sha256sum -c --quiet
	mv $(NIIVUE_JS).tmp $(NIIVUE_JS)

# The rules' conda environment, generated from pyproject.toml's dependencies.
conda-env: $(VENV)/.installed
	python -m bids2hub.condaenv

# What the tests need besides Python packages: a real SLURM (slurmctld, slurmd,
# slurmdbd with MariaDB, munge) and Debian's chromium for the browser checks.
# Installs with apt when run as root; otherwise says what is missing.
system-deps:
	tests/system-deps.sh

test: system-deps setup
	python -m pytest -ra

lint: setup
	python -m bids2hub.condaenv --check
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
	python tests/benchmarks/bench_validation.py --limits
	python tests/benchmarks/bench_workflow.py
	python tests/benchmarks/bench_scheduler.py
	python tests/benchmarks/bench_e2e.py $(if $(PEER_DIR),--peer-dir $(PEER_DIR) --peer-python $(PEER_PYTHON))
	python tests/benchmarks/bench_push.py

clean:
	rm -rf results demo .snakemake
