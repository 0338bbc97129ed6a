# The single entry point. `make demo` runs the demo pipeline, `make test` the tests; both install first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
SOURCE ?= ../shared/data/fracatlas-mini
FULL_SIZE ?=
# Pinned to the builds these machines carry on disk; see pyproject.toml.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: help install test test-tools annotator-tools viewer-tools test-long chaos lint browser-tools pacs-tools slurm-tools test-slurm demo up down status ps logs dispatch worker-host compose-e2e bench bench-ingest bench-dispatch bench-fold bench-classify bench-sweep bench-quality bench-sr bench-tracking bench-export gpu-kit gpu-check compose-tools compose-check docker-pins wheelhouse imagenet-weights clean

help:  ## this list: every target, with the line beside it in the Makefile
	@awk -F ':.*## ' '/^[a-z][a-z0-9 -]*:.*## / { printf "  make %-15s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

# make bench-fold: the length of each run, and how many job-system runs (each between two plain ones)
FOLD_EPOCHS ?= 6
FOLD_ITERATIONS ?= 30
FOLD_ROUNDS ?= 2
WHEELHOUSE ?=
WHEEL_PYTHON ?= 3.11
WHEEL_PLATFORM ?= x86_64

# Python 3.11 or newer, refused by name otherwise; a .venv made by another interpreter (or broken) is made again.
VERSION_OF := -c 'import os, sys; print(sys.version_info[:3], os.path.realpath(sys._base_executable))'
define CHECK_PYTHON
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "make: $(PYTHON) is $$($(PYTHON) --version 2>&1 || echo 'not found'); this project needs Python 3.11 or newer: install it and run make PYTHON=python3.11 ..." >&2; exit 1; }
	@if [ -d $(VENV) ] && [ "$$($(PY) $(VERSION_OF) 2>/dev/null)" != "$$($(PYTHON) $(VERSION_OF))" ]; then \
	  echo "make: $(VENV) was made by another Python than $(PYTHON) (or is broken): making it again"; rm -rf $(VENV); fi
endef

ifeq ($(WHEELHOUSE),)
$(INSTALLED): pyproject.toml
	$(CHECK_PYTHON)
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e '.[dev,tracking-server]'
	touch $(INSTALLED)
else
# Offline: the machine's own torch (the packages of PYTHON, venv or not), everything else from the wheelhouse.
$(INSTALLED): pyproject.toml
	$(CHECK_PYTHON)
	$(PYTHON) -m services.offline.venv_over $(VENV) $(WHEELHOUSE)
	touch $(INSTALLED)
endif

install: $(INSTALLED)  ## the virtual environment .venv: pinned torch from disk, the project and its dev tools

lint: install  ## ruff check and ruff format --check
	$(VENV)/bin/ruff check services workers shared tests bench
	$(VENV)/bin/ruff format --check services workers shared tests bench

test: install lint test-tools annotator-tools viewer-tools  ## install, lint, then the test suite (real Redis, workers, SQLite and PostgreSQL)
	$(VENV)/bin/pytest -q -ra --durations=15
	@echo "left out for their minutes: make test-long and make test-slurm (CI runs both), make chaos (the longer faults)"

GPUS ?=
# LOCAL=1: the local stack even where a Docker engine answers. PUBLISH=ADDRESS: Redis and PostgreSQL
# published on that address for worker hosts (docs/deployment.md). PACS=1: the stack's own PACS and viewer
# (docs/viewer.md).
LOCAL ?=
PUBLISH ?=
PACS ?=
LAUNCH := $(PY) -m services.launcher $(if $(LOCAL),--local)

up: install $(if $(PACS),viewer-tools)  ## the stack: compose with a Docker engine, else local supervisord (LOCAL=1, GPUS=0,1, PUBLISH=ADDRESS, PACS=1)
	$(LAUNCH) up --gpus "$(GPUS)" $(if $(PUBLISH),--publish "$(PUBLISH)") $(if $(PACS),--pacs)

down: install  ## stop the stack
	$(LAUNCH) down

status ps: install  ## the stack's processes and the workers that answer
	$(LAUNCH) ps; $(LAUNCH) dispatch workers || true

logs: install  ## the stack's logs
	$(LAUNCH) logs

dispatch: install  ## dispatch against the running stack in either mode: make dispatch ARGS='jobs'
	$(LAUNCH) dispatch $(ARGS)

worker-host: install  ## workers on this machine for another machine's stack (docs/deployment.md)
	$(PY) -m services.launcher worker-host --gpus "$(GPUS)"

test-long: install annotator-tools viewer-tools  ## the tests of minutes each, left out of make test (nnU-Net's residual-encoder presets and fine-tuning; the model's export and import, the annotators' round trip and external validation, which share one tiny model); CI runs it
	$(VENV)/bin/pytest -q -ra -m long

test-slurm: install slurm-tools  ## the SLURM workers' folds on a real one-node SLURM (job table on PostgreSQL), one handed back at its time limit; CI runs it
	$(VENV)/bin/pytest -q -ra -m slurm tests/services/test_slurm_folds.py

chaos: install viewer-tools  ## the longer fault tests: a fold through a Redis kill -9, minutes without Redis and PostgreSQL
	$(VENV)/bin/pytest -q -ra -m chaos tests/services/test_chaos.py

# The annotation tools the round-trip tests run for real, each in a virtual environment of its own (their pins are
# not ours, nor each other's: Label Studio wants pyarrow 24, Datumaro 25).
TOOLS := .tools
LABEL_STUDIO_PIN := label-studio==1.23.2
# Its pins admit sentry-sdk 3, whose options it does not know: it then fails at start.
LABEL_STUDIO_SENTRY := "sentry-sdk<3"
DATUMARO_PIN := datumaro==1.13.12

# Each marked installed by its pin, so that a new pin makes its environment again.
$(TOOLS)/label-studio/.$(LABEL_STUDIO_PIN):
	rm -rf $(TOOLS)/label-studio && $(PYTHON) -m venv $(TOOLS)/label-studio
	$(TOOLS)/label-studio/bin/pip install -q $(LABEL_STUDIO_PIN) $(LABEL_STUDIO_SENTRY)
	touch $@

$(TOOLS)/datumaro/.$(DATUMARO_PIN):
	rm -rf $(TOOLS)/datumaro && $(PYTHON) -m venv $(TOOLS)/datumaro
	$(TOOLS)/datumaro/bin/pip install -q $(DATUMARO_PIN)
	touch $@

annotator-tools: $(TOOLS)/label-studio/.$(LABEL_STUDIO_PIN) $(TOOLS)/datumaro/.$(DATUMARO_PIN)  ## Label Studio and Datumaro (CVAT's format library) in .tools/, for the annotators' round trip (tests/workers/predict/test_annotators.py)

# OHIF's built viewer, the npm package's dist/ alone (npm pack: no install of its build dependencies), for PACS=1.
# The pin in services/viewer/ohif-version, which the viewer image's build reads too.
OHIF_VERSION := $(shell cat services/viewer/ohif-version)
$(TOOLS)/ohif/.$(OHIF_VERSION):
	@$(DEBIAN_TOOLS) "$(VIEWER_TOOLS)" "$(NPM_TOOLS)"
	rm -rf $(TOOLS)/ohif && mkdir -p $(TOOLS)/ohif
	cd $(TOOLS)/ohif && npm pack --silent @ohif/app@$(OHIF_VERSION) >/dev/null && tar xzf ohif-app-$(OHIF_VERSION).tgz && mv package/dist dist && rm -rf package ohif-app-$(OHIF_VERSION).tgz
	touch $@

viewer-tools: $(TOOLS)/ohif/.$(OHIF_VERSION)  ## the local stack's own PACS and viewer (PACS=1): Debian's orthanc, orthanc-dicomweb and nginx, OHIF in .tools/ohif (make test adds chromium for the viewer's test)
	@$(DEBIAN_TOOLS) "$(VIEWER_TOOLS)"

# The Debian packages of each group of tests: as root installed where missing, else one line says what to install.
DEBIAN_TOOLS := bash tests/debian_tools.sh
BROWSER_TOOLS := the browser tests (the MLflow pages, the viewer);command -v chromium;chromium
PACS_TOOLS := the PACS tests;command -v Orthanc && test -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so;orthanc orthanc-dicomweb
SLURM_TOOLS := the SLURM tests;command -v slurmctld && command -v munged;slurm-wlm munge
COMPOSE_TOOLS := the compose file tests;command -v docker-compose;docker-compose
VIEWER_TOOLS := the PACS and viewer of PACS=1;command -v nginx && command -v Orthanc && test -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so;orthanc orthanc-dicomweb nginx-light
# A group of its own: a machine with NodeSource's nodejs has npm from it, and Debian's npm conflicts with that.
NPM_TOOLS := fetching OHIF (npm pack);command -v npm;npm

test-tools:  ## every Debian package the tests use, in one go (make test runs it): installed as root, else named in one line
	@$(DEBIAN_TOOLS) "$(COMPOSE_TOOLS)" "$(BROWSER_TOOLS)" "$(PACS_TOOLS)" "$(SLURM_TOOLS)"

browser-tools:  ## Debian's chromium, headless, for the browser tests (the MLflow pages, tests/workers/tracking/test_tracking.py; the viewer, tests/services/test_viewer.py)
	@$(DEBIAN_TOOLS) "$(BROWSER_TOOLS)"

pacs-tools:  ## Debian's orthanc and orthanc-dicomweb, a real PACS for the DICOMweb round trip (tests/workers/predict/test_pacs.py)
	@$(DEBIAN_TOOLS) "$(PACS_TOOLS)"

slurm-tools:  ## Debian's slurm-wlm and munge, a real one-node SLURM for the SLURM workers' tests (tests/slurm_cluster.py)
	@$(DEBIAN_TOOLS) "$(SLURM_TOOLS)"

compose-tools:  ## Debian's docker-compose for the compose file checks, where missing
	@$(DEBIAN_TOOLS) "$(COMPOSE_TOOLS)"

# The compose stack for real on a Docker engine (installed and started here if none answers): build, up, the
# demo through a worker stop, a Redis kill -9, a PostgreSQL restart and a down/up, then a second host.
compose-e2e: install compose-tools  ## the compose stack for real on a Docker engine: demo, faults, a second host
	$(PY) tests/compose_e2e/run.py

# The Dockerfile's pins files (services/docker/pins/), after an edit of pyproject.toml's dependencies.
docker-pins: install  ## rewrite the Dockerfile's pins files after an edit of pyproject.toml's dependencies
	$(PY) services/docker/requirements.py

compose-check: install compose-tools  ## only the compose file tests
	$(VENV)/bin/pytest -q tests/services/test_compose.py

demo: up  ## install, bring the stack up, run the demo pipeline (dispatch demo --wait)
	$(LAUNCH) dispatch demo --wait

bench: bench-ingest bench-dispatch bench-fold bench-classify bench-sweep bench-quality bench-sr bench-tracking bench-export  ## every benchmark below, printing its figures

bench-ingest: install  ## the ingest through the job system against the sequential baseline (SOURCE, FULL_SIZE=1)
	$(PY) -m bench.ingest --source "$(SOURCE)" $(if $(FULL_SIZE),--full-size)

# BASELINE=DIR: also time `dispatch train` against another checkout (git worktree add DIR <commit>)
bench-dispatch: install  ## the job system's own cost: five sleep-only folds on five workers against the ideal (BASELINE=DIR)
	$(PY) -m bench.dispatch $(if $(BASELINE),--baseline $(BASELINE))

bench-fold: install  ## a fold through the job system against plain nnUNetv2_train (FOLD_EPOCHS, FOLD_ROUNDS)
	$(PY) -m bench.fold_overhead --epochs $(FOLD_EPOCHS) --iterations $(FOLD_ITERATIONS) --rounds $(FOLD_ROUNDS)

bench-classify: install  ## the classifier's images per second against a plain torchvision baseline (SOURCE)
	$(PY) -m bench.classify --source "$(SOURCE)"

# A sweep's trials side by side on SWEEP_WORKERS gpu-queue workers, and what the median pruner saves.
SWEEP_WORKERS ?= 2
bench-sweep: install  ## a sweep's trials side by side on SWEEP_WORKERS workers, and what pruning saves
	$(PY) -m bench.sweep --source "$(SOURCE)" --workers $(SWEEP_WORKERS)

# The classifier on the notebook's 224 squares beside the defaults (long side 512, input 384), same data and seed.
QUALITY_EPOCHS ?= 10
QUALITY_BACKBONES ?= resnet18,densenet121
bench-quality: install  ## the classifier: the notebook's 224 squares beside the defaults, then two backbones (QUALITY_EPOCHS, QUALITY_BACKBONES, RESULTS=docs/results.md)
	$(PY) -m bench.quality --source "$(SOURCE)" --epochs $(QUALITY_EPOCHS) $(if $(RESULTS),--results $(RESULTS))
	$(PY) -m bench.quality --source "$(SOURCE)" --epochs $(QUALITY_EPOCHS) --backbones $(QUALITY_BACKBONES) $(if $(RESULTS),--results $(RESULTS))

# make bench-sr: the super-resolution network's training budget per scale, in seconds
SR_SECONDS ?= 300
SR_SCALES ?= 2
bench-sr: install  ## the super-resolution network against bicubic and Lanczos (SR_SECONDS, SR_SCALES)
	$(PY) -m bench.superres --source "$(SOURCE)" --seconds $(SR_SECONDS) --scales $(SR_SCALES)

# MLflow's lag per entry kind with a 5-fold run and a sweep at once: SQLite (with and without the login cache)
# and PostgreSQL behind the stack's MLflow (TRACKING_POSTGRES: a server where the bench may create databases).
TRACKING_POSTGRES ?= postgresql://postgres@127.0.0.1/test
bench-tracking: install  ## MLflow's lag per entry kind with a 5-fold run and a sweep at once
	$(PY) -m bench.tracking --source "$(SOURCE)" --postgres "$(TRACKING_POSTGRES)"

# A bundle of five folds and a classifier: its size, export and import time against nnU-Net's own commands.
EXPORT_SIZE ?= 256
bench-export: install  ## a bundle's size and its export and import time against nnU-Net's own commands (SOURCE, EXPORT_SIZE)
	$(PY) -m bench.export $(if $(SOURCE),--source "$(SOURCE)") --size $(EXPORT_SIZE)

# On a machine with an index: what bench/gpu_check.sh needs on an offline GPU server, in .gpu-kit/.
gpu-kit: install  ## what bench/gpu_check.sh needs on an offline GPU server, in .gpu-kit/
	$(PY) -m bench.gpu_kit --source "$(SOURCE)"

gpu-check:  ## bash bench/gpu_check.sh (on the GPU machine)
	bash bench/gpu_check.sh

IMAGENET_DIR ?= imagenet
imagenet-weights: install  ## every classifier backbone's ImageNet file into IMAGENET_DIR, for servers without internet (TORCH_HOME)
	$(PY) -m services.offline.imagenet $(IMAGENET_DIR)

wheelhouse: install  ## wheels for an offline install (WHEEL_PYTHON, WHEEL_PLATFORM)
	$(PY) -m services.offline.wheelhouse --out wheelhouse --python-version $(WHEEL_PYTHON) --platform $(WHEEL_PLATFORM)

clean: down  ## stop the stack and remove var/
	rm -rf var
