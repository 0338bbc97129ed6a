#!/usr/bin/env bash
# One nnU-Net fold at a time on the one GPU this container reserves (WORKER_GPU names it).
set -euo pipefail
python -m services.docker.prestart
python -m shared.data_root check
exec celery -A shared.celery_app worker -Q gpu -c 1 -n "gpu${WORKER_GPU:-0}@%h" -E --loglevel INFO
