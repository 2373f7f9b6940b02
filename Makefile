# One-command set-up: `make demo` and `make test` work on a fresh machine.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch is installed first, pinned, so that nothing pulls a CUDA build (the CPU wheel is on disk).
TORCH := torch==2.13.0

.PHONY: install system-deps demo test lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[test,rl,cluster]'
	touch $(STAMP)

install: $(STAMP)

# CRIU >= 4.2, runc, redis etc. for the real migration engine (root only; skipped otherwise).
system-deps:
	@if [ -x scripts/install-system-deps ]; then scripts/install-system-deps; fi

demo: install
	$(BIN)/edgemigrate run default

test: install system-deps
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests benchmarks

bench: install
	$(BIN)/python benchmarks/bench_sim.py

clean:
	rm -rf $(VENV) results build *.egg-info
