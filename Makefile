# convexbn — two set-up commands: `make reproduce` (the whole pipeline) and `make test` (the tests).
# Both create .venv/ and install every pinned requirement first (about a minute on a fresh machine).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CORES  ?= all
# Extra arguments for snakemake, e.g. `make reproduce SMK_ARGS="--configfile config/ci.yaml"`.
SMK_ARGS ?=

.PHONY: venv test test-fast reproduce fashion-mnist figures bench clean-venv

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and exactly: the CPU wheel; a looser request would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

test: venv
	$(PY) -m pytest tests

test-fast: venv
	$(PY) -m pytest tests -m "not slow and not slurm"

# The report covers every table that exists, so a failed download (CIFAR offline) does not block it.
reproduce: venv fashion-mnist
	@status=0; $(VENV)/bin/snakemake --cores $(CORES) --keep-going $(SMK_ARGS) || { status=$$?; \
	  echo "Some jobs failed (see results/logs/); everything independent of them was produced."; }; \
	targets=$$(for r in $$($(VENV)/bin/snakemake --list-rules $(SMK_ARGS) 2>/dev/null | grep '^figures_'); do \
	  [ -f results/tables/$${r#figures_}.csv ] && echo $$r; done); \
	$(VENV)/bin/snakemake --report report.html $(SMK_ARGS) $$targets; exit $$status

# Fashion-MNIST (the full-scale offline real dataset) from Debian's package when we are root on Debian;
# otherwise a hint (the pipeline then reports the missing files with the same instructions).
FMNIST := /usr/share/datasets/fashion-mnist
fashion-mnist:
	@if [ -d $(FMNIST) ]; then echo "Fashion-MNIST found in $(FMNIST)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else echo "Fashion-MNIST not installed: sudo apt-get install dataset-fashion-mnist, or set data.fashion_mnist.dir"; fi

figures: venv
	$(VENV)/bin/snakemake --cores $(CORES) figures $(SMK_ARGS)

bench: venv
	$(PY) benchmarks/bench_solver.py

clean-venv:
	rm -rf $(VENV)
