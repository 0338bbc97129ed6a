#!/usr/bin/env bash
# Conversion, splits, nnU-Net preprocessing: concurrency = CPU_CONCURRENCY (default: the cores).
set -euo pipefail
python -m services.docker.prestart
python -m shared.data_root check
exec celery -A shared.celery_app worker -Q cpu -c "${CPU_CONCURRENCY:-$(nproc)}" -n "cpu@%h" -E --loglevel INFO
