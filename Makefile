# The single entry point. `make demo` runs the demo pipeline, `make test` the tests; both install first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
SOURCE ?= ../shared/data/fracatlas-mini
REPLICATE ?= 1
# Pinned to the builds these machines carry on disk; see pyproject.toml.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: help install test lint demo up down status ps logs bench bench-ingest compose-check clean

help:
	@echo "make demo      install, bring the stack up, run the demo pipeline (dispatch demo --wait)"
	@echo "make test      install and run lint + the test suite (real Redis, workers, SQLite and Postgres)"
	@echo "make up | down | status | logs    the stack (local supervisord mode without a Docker engine)"
	@echo "make bench     benchmarks (bench-ingest SOURCE=path)"

$(INSTALLED): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(INSTALLED)

install: $(INSTALLED)

lint: install
	$(VENV)/bin/ruff check services workers shared tests bench
	$(VENV)/bin/ruff format --check services workers shared tests bench

test: install lint
	$(VENV)/bin/pytest -q -ra

up: install
	$(PY) -m services.local.stack up

down: install
	$(PY) -m services.local.stack down

status ps: install
	$(PY) -m services.local.stack status; $(VENV)/bin/dispatch workers || true

logs: install
	$(PY) -m services.local.stack logs

demo: up
	$(VENV)/bin/dispatch demo --overwrite --wait

bench: bench-ingest

bench-ingest: install
	$(PY) -m bench.ingest --source "$(SOURCE)" --replicate $(REPLICATE)

clean: down
	rm -rf var
