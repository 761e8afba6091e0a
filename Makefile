# One-command setup: `make demo` and `make test` create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# the CPU build of PyTorch (an unpinned `torch` would pull a multi-GB CUDA build)
TORCH  ?= torch==2.13.0

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/vesseltree demo -o out/demo

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check vesseltree tests benchmarks

bench: setup
	$(BIN)/python -m pip install -q -e ".[bench]"
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf out .pytest_cache .ruff_cache
