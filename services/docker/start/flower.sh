#!/usr/bin/env bash
# Flower on FLOWER_PORT with basic auth (FLOWER_BASIC_AUTH).
set -euo pipefail
python -m services.docker.prestart
exec celery -A shared.celery_app flower --conf=services/flower/flowerconfig.py
