# convexbn — two commands: `make reproduce` (the whole pipeline) and `make test` (the test suite).
# Both create .venv/ and install the pinned requirements first.
#
# Which PyTorch build you get: requirements.txt pins torch==2.13.0 and pip picks the build. From PyPI
# on Linux x86-64 that is the CUDA build (several GB); where pip is configured with a local
# find-links folder holding the CPU wheel (as on the machines this project is developed on), it is
# that CPU wheel. Choose another build with TORCH_INDEX, e.g.
#   make venv TORCH_INDEX=https://download.pytorch.org/whl/cpu     # CPU-only wheel
#   make venv TORCH_INDEX=https://download.pytorch.org/whl/cu126   # a specific CUDA version
# The install prints the build it got. Everything runs on CUDA when torch finds a GPU, else on CPU.
PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
CORES       ?= all
TORCH_INDEX ?=
# Extra arguments for snakemake, e.g. `make reproduce SMK_ARGS="--configfile config/ci.yaml"`.
SMK_ARGS    ?=
TORCH_PIN   := $(shell grep -E '^torch==' requirements.txt)

.PHONY: venv venv-test test test-fast lint format reproduce fashion-mnist figures bench clean-venv

# Runtime install (what `make reproduce` needs): torch from the chosen index, requirements.txt, the package.
venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_PIN)"
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@$(PY) -c "import torch; b = 'CUDA ' + torch.version.cuda if torch.version.cuda else 'CPU-only'; \
	  print(f'installed torch {torch.__version__} ({b} build; CUDA device found: {torch.cuda.is_available()})')"
	touch $@

# Test and style tools on top (what `make test` needs).
venv-test: $(VENV)/.installed-test

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

test: venv-test
	$(PY) -m pytest tests

test-fast: venv-test
	$(PY) -m pytest tests -m "not slow and not slurm"

# Style: ruff (lint + format) and snakefmt, configured in pyproject.toml; tests/test_style.py runs the checks.
lint: venv-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/snakefmt --check .

format: venv-test
	$(VENV)/bin/ruff format .
	$(VENV)/bin/snakefmt .

# The report covers every table that exists, so a failed download (CIFAR offline) does not block it.
# Its targets come before SMK_ARGS: `--configfile` takes every word after it as a file.
reproduce: venv fashion-mnist
	@status=0; $(VENV)/bin/snakemake --cores $(CORES) --keep-going $(SMK_ARGS) || { status=$$?; \
	  echo "Some jobs failed (see results/logs/); everything independent of them was produced."; }; \
	targets=$$(for r in $$($(VENV)/bin/snakemake --list-rules $(SMK_ARGS) 2>/dev/null | grep '^figures_'); do \
	  [ -f results/tables/$${r#figures_}.csv ] && echo $$r; done; [ -f figures/claims.md ] && echo claims_scoreboard); \
	$(VENV)/bin/snakemake $$targets --report report.html $(SMK_ARGS); exit $$status

# Fashion-MNIST (the full-scale offline real dataset) comes from Debian's dataset-fashion-mnist package.
# System packages are never installed silently: on a terminal we ask first; otherwise (CI, a pipe) we
# print the one command and go on, and the pipeline reports the Fashion-MNIST jobs as failed with the
# same instructions while everything else completes.
FMNIST     := /usr/share/datasets/fashion-mnist
SUDO       := $(if $(filter 0,$(shell id -u)),,sudo )
FMNIST_CMD := $(SUDO)apt-get install dataset-fashion-mnist
fashion-mnist:
	@if [ -d $(FMNIST) ]; then echo "Fashion-MNIST found in $(FMNIST)"; exit 0; fi; \
	if [ -t 0 ] && command -v apt-get >/dev/null; then \
	  printf 'Fashion-MNIST is not installed. Run "%s" now? [y/N] ' "$(FMNIST_CMD)"; read answer; \
	  case "$$answer" in [yY]*) $(SUDO)apt-get update -qq && $(FMNIST_CMD) && exit 0;; esac; \
	fi; \
	echo "Fashion-MNIST not installed; continuing without it. To include it: $(FMNIST_CMD)" \
	  "(or put its four idx .gz files in a folder and set data.fashion_mnist.dir)"

figures: venv
	$(VENV)/bin/snakemake --cores $(CORES) figures $(SMK_ARGS)

bench: venv
	$(PY) benchmarks/bench_solver.py

clean-venv:
	rm -rf $(VENV)
