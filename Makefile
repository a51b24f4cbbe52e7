# Thin wrappers over the commands the README and CI use; scripts/check is the local loop.
#   make install            the dev venv (.venv), as in the README
#   make check              scripts/check: ruff, ruff format --check, mypy, import contracts,
#                           typed client check, pytest (FAST=1: no pytest; ARGS=... to pytest)
#   make test ARGS=-x       pytest only
#   make format             sort imports and format with ruff
#   make serve              accountgraph serve --demo (SERVE_ARGS=... to change)

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=
SERVE_ARGS ?= --demo

.PHONY: install check test format serve

install:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e '.[dev]'

check:
	scripts/check $(if $(FAST),--fast) $(ARGS)

test:
	$(BIN)/pytest $(ARGS)

format:
	$(BIN)/ruff check --select I --fix .
	$(BIN)/ruff format .

serve:
	$(BIN)/accountgraph serve $(SERVE_ARGS)
