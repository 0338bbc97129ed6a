#!/usr/bin/env bash
# One-shot: migrate the job table and claim the shared data root (first host only).
set -euo pipefail
python -m services.docker.prestart
alembic upgrade head
python -m shared.data_root claim
