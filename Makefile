# The two commands of the README: `make demo` (edit the bundled scene, render a video) and `make test` (the lint and
# architecture checks, then every test that can run offline, the multi-minute ones included). `make test-fast`
# leaves out the tests marked slow; `make lint` is the checks alone.
VENV := .venv
BIN := $(VENV)/bin
# The demo runs offline on CPU: IP2P when its weights are cached, else the colorkey demonstration editor.
# On a GPU machine with the real weights:
#   make demo DEVICE=cuda MODEL=timbrooks/instruct-pix2pix PROMPT="turn the ball blue"
DEVICE ?= cpu
MODEL ?= auto
PROMPT ?= turn the red ball blue

.PHONY: setup demo lint test test-fast

setup:
	@bash scripts/setup.sh

demo: setup
	@DEVICE="$(DEVICE)" MODEL="$(MODEL)" PROMPT="$(PROMPT)" bash scripts/demo.sh

# ruff (lint) and import-linter (the layers in pyproject.toml): a back-import or a circle fails here, in seconds.
lint: setup
	$(BIN)/ruff check --no-cache .
	$(BIN)/lint-imports --no-cache

test: lint
	$(BIN)/python -m pytest -q --durations=25

test-fast: lint
	$(BIN)/python -m pytest -q -m "not slow"
