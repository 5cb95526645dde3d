# The two commands: `make demo` (install + tiny end-to-end pipeline) and `make test` (install + tests).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.euroflow-installed
DEMO_CONFIG ?= workflow/configs/tiny.yaml
PYTEST_ARGS ?=

.PHONY: install demo test lint dry-run clean-demo

install: $(STAMP)

$(STAMP): pyproject.toml envs/requirements.txt envs/constraints.txt
	@echo "== installing into $(VENV) (pinned: envs/requirements.txt, torch pinned by envs/constraints.txt)"
	@start=$$(date +%s); \
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); \
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip && \
	$(BIN)/pip install --quiet --disable-pip-version-check -r envs/requirements.txt -c envs/constraints.txt && \
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . && \
	echo "== install took $$(( $$(date +%s) - start )) s"
	@touch $@

demo: install
	@start=$$(date +%s); \
	$(BIN)/snakemake --profile profiles/local --configfile $(DEMO_CONFIG) && \
	echo "== pipeline took $$(( $$(date +%s) - start )) s" && \
	$(BIN)/euroflow results --config $(DEMO_CONFIG)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/snakemake --lint

dry-run: install
	$(BIN)/snakemake -n --profile profiles/local --configfile $(DEMO_CONFIG)

clean-demo:
	rm -rf results/tiny results/provenance.sqlite
