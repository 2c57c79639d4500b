# The two commands of the README: `make demo` (edit the bundled scene, render a video) and `make test` (the lint and
# architecture checks, then every test that can run offline but those marked `heavy`: the two conformance runs of
# several CPU minutes and 6-12 GB each). `make test-all` is `make test` with the heavy ones; `make test-fast`
# leaves out the tests marked slow and the conformance tier; `make lint` is the checks alone; `make
# test-conformance` runs the real architectures at full size (random weights) on the CPU, heavy ones included.
VENV := .venv
BIN := $(VENV)/bin
# The demo runs offline on CPU: IP2P when its weights are cached, else the colorkey demonstration editor.
# On a GPU machine with the real weights:
#   make demo DEVICE=cuda MODEL=timbrooks/instruct-pix2pix PROMPT="turn the ball blue"
DEVICE ?= cpu
MODEL ?= auto
PROMPT ?= turn the red ball blue
# pytest workers (pytest-xdist), one torch thread each; tests sharing a trained scene stay on one worker
# (tests/conftest.py). WORKERS=0 runs everything in one process.
WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(WORKERS) --dist loadgroup --no-loadscope-reorder

.PHONY: setup demo lint test test-all test-fast test-conformance

setup:
	@bash scripts/setup.sh

demo: setup
	@DEVICE="$(DEVICE)" MODEL="$(MODEL)" PROMPT="$(PROMPT)" bash scripts/demo.sh

# ruff (lint) and import-linter (the layers in pyproject.toml): a back-import or a circle fails here, in seconds.
lint: setup
	$(BIN)/ruff check --no-cache .
	$(BIN)/lint-imports --no-cache

test: lint
	$(PYTEST) -m "not heavy" --durations=25

test-all: lint
	$(PYTEST) --durations=25

test-fast: lint
	$(PYTEST) -m "not slow and not conformance"

# The conformance tier alone (in `make test` but its `heavy` tests): the real architectures at full size with random
# weights, once each on the CPU at a small input (about 15 minutes, up to 12 GB of memory: docs/benchmarks.md).
test-conformance: setup
	$(BIN)/python -m pytest -q -s --durations=0 -m conformance
