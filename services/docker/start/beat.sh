#!/usr/bin/env bash
# Celery beat: sends the reaper that re-queues the jobs of lost workers.
set -euo pipefail
python -m services.docker.prestart
mkdir -p "$DATA_ROOT/stack"
exec celery -A shared.celery_app beat -s "$DATA_ROOT/stack/celerybeat-schedule" --loglevel INFO
