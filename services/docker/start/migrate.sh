#!/usr/bin/env bash
# One-shot: migrate the job table and claim the shared data root (first host only).
set -euo pipefail
python -m services.docker.prestart
python -m shared.db.migrate  # the job table, then Optuna's storage
python -m shared.data_root claim
