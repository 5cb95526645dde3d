# The two commands: `make demo` (install + tiny end-to-end pipeline) and `make test` (install + tests).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.euroflow-installed
DEMO_CONFIG ?= workflow/configs/tiny.yaml
PYTEST_ARGS ?=
# llama-cpp-python ships only as source and compiles llama.cpp (~5 min on 2 idle cores): build once, keep the wheel
LLAMA_CPP_VERSION := 0.3.36
WHEELHOUSE ?= $(HOME)/.cache/euroflow/wheels
LLAMA_STAMP := $(VENV)/.llama-cpp-$(LLAMA_CPP_VERSION)
# roc-validator checks the RO-Crate export; it pins rich<14, so it gets a venv of its own. rocrate 0.9.0
# comes along only for its bundled RO-Crate 1.1 JSON-LD context (served to the validator offline)
ROCV_VENV ?= .venv-roc-validator
ROCV_STAMP := $(ROCV_VENV)/.installed
# the local one-node Slurm cluster of the tests marked `slurm` (state under EUROFLOW_SLURM_ROOT, default /tmp/euroflow-slurm)
SLURM_UP := tests/slurm/cluster/up.sh
SLURM_DOWN := tests/slurm/cluster/down.sh

.PHONY: install install-llama-cpp install-roc-validator demo test lint dry-run clean-demo slurm-up slurm-down

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

install-llama-cpp: $(LLAMA_STAMP)

$(LLAMA_STAMP): $(STAMP)
	@if ! ls $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1; then \
	  echo "== building llama-cpp-python $(LLAMA_CPP_VERSION) from source, once (cached in $(WHEELHOUSE))"; \
	  start=$$(date +%s); \
	  CMAKE_ARGS="-DGGML_NATIVE=OFF" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	    $(BIN)/pip wheel --quiet --disable-pip-version-check --no-deps llama-cpp-python==$(LLAMA_CPP_VERSION) -w $(WHEELHOUSE) && \
	  echo "== llama-cpp-python build took $$(( $$(date +%s) - start )) s"; \
	fi
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	@touch $@

install-roc-validator: $(ROCV_STAMP)

$(ROCV_STAMP): envs/roc-validator.txt
	@echo "== installing roc-validator into $(ROCV_VENV) (envs/roc-validator.txt)"
	@test -x $(ROCV_VENV)/bin/python || $(PYTHON) -m venv $(ROCV_VENV)
	$(ROCV_VENV)/bin/pip install --quiet --disable-pip-version-check -r envs/roc-validator.txt
	$(ROCV_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps rocrate==0.9.0
	@touch $@

demo: install
	@start=$$(date +%s); \
	$(BIN)/snakemake --profile profiles/local --configfile $(DEMO_CONFIG) && \
	echo "== pipeline took $$(( $$(date +%s) - start )) s" && \
	$(BIN)/euroflow results --config $(DEMO_CONFIG)

# Brings the Slurm cluster up for the tests and down afterwards, pass or fail (a cluster that was already up,
# e.g. from `make slurm-up`, stays up). Under CI=true a failed bring-up fails the target; elsewhere the
# slurm tests skip. Exits with pytest's status.
test: install install-llama-cpp install-roc-validator
	@if bash $(SLURM_UP) --check >/dev/null 2>&1; then \
	  echo "== slurm: already up, leaving it up after the tests (make slurm-down stops it)"; \
	elif bash $(SLURM_UP); then \
	  trap 'bash $(SLURM_DOWN)' EXIT; trap 'exit 130' INT TERM; \
	else \
	  bash $(SLURM_DOWN) >/dev/null 2>&1 || true; \
	  case "$${CI:-}" in true|TRUE|True|1|yes) \
	    echo "!! CI=true and the Slurm test cluster did not come up: failing (see the lines above)" >&2; exit 1;; esac; \
	  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2; \
	  echo "!! WARNING: no Slurm test cluster (see above): the tests marked slurm will SKIP" >&2; \
	  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2; \
	fi; \
	EUROFLOW_REQUIRE_LLAMA_CPP=1 EUROFLOW_ROC_VALIDATOR=$(ROCV_VENV)/bin/rocrate-validator $(BIN)/python -m pytest $(PYTEST_ARGS)

slurm-up:
	@bash $(SLURM_UP)

slurm-down:
	@bash $(SLURM_DOWN)

lint: install
	$(BIN)/snakemake --lint

dry-run: install
	$(BIN)/snakemake -n --profile profiles/local --configfile $(DEMO_CONFIG)

clean-demo:
	rm -rf results/tiny results/provenance.sqlite
