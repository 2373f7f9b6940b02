# One-command set-up: `make demo` and `make test` work on a fresh machine.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch is installed first, pinned, so that nothing pulls a CUDA build (the CPU wheel is on disk).
TORCH := torch==2.13.0

.PHONY: install system-deps demo demo-ppcm test lint bench bench-engine clean

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

# PPCM (Liu et al. 2024): train it on the bundled scenario and evaluate it against all eight baselines
demo-ppcm: install
	$(BIN)/edgemigrate experiment ppcm training

test: install system-deps
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests benchmarks

# timings print one JSON line per configuration
bench: install
	$(BIN)/python benchmarks/bench_sim.py
	$(BIN)/python benchmarks/bench_trace_read.py
	$(BIN)/python benchmarks/bench_metaheuristics.py
	$(BIN)/python benchmarks/bench_rl.py
	$(BIN)/python benchmarks/bench_codecs.py --size-mb 64 --codecs lz4:1,lz4:6,zstd:1,zstd:3,zlib:1,wkdm:0
	$(BIN)/python benchmarks/bench_pipeline.py --size-mb 32 --rates 100

# needs root: namespaces, CRIU, runc, podman
bench-engine: install system-deps
	$(BIN)/python scripts/bench_testbed.py
	$(BIN)/python benchmarks/bench_migration.py

clean:
	rm -rf $(VENV) results build *.egg-info
