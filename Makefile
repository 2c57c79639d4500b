# The two commands of the README: `make demo` (edit the bundled scene, render a video) and `make test` (every test
# that can run offline, the multi-minute ones included). `make test-fast` leaves out the tests marked slow.
VENV := .venv
BIN := $(VENV)/bin
# The demo runs offline on CPU: IP2P when its weights are cached, else the colorkey demonstration editor.
# On a GPU machine with the real weights:
#   make demo DEVICE=cuda MODEL=timbrooks/instruct-pix2pix PROMPT="turn the ball blue"
DEVICE ?= cpu
MODEL ?= auto
PROMPT ?= turn the red ball blue

.PHONY: setup demo test test-fast

setup:
	@bash scripts/setup.sh

demo: setup
	@DEVICE="$(DEVICE)" MODEL="$(MODEL)" PROMPT="$(PROMPT)" bash scripts/demo.sh

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"
