"""Periodic care of the job table, and what a worker tells `dispatch workers` about itself."""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any

from celery.worker.control import inspect_command

from shared import jobs
from shared.broker import pending_task_ids
from shared.celery_app import app
from shared.db.models import utcnow
from shared.enqueue import send
from shared.settings import get_settings
from shared.tasknames import QUEUE_OF, REAP
from workers.runtime import worker_gpu
from workers.tracking.client import tracking_enabled
from workers.tracking.outbox import replay_spool

log = logging.getLogger(__name__)


@app.task(name=REAP)
def reap_lost_jobs() -> dict[str, int]:
    """Celery beat sends this every REAP_INTERVAL_SECONDS: re-queue jobs whose worker stopped beating,
    send again the messages that the broker lost, release waiting jobs whose release was lost, and send
    MLflow what jobs could not (docs/tracking.md)."""
    requeued = jobs.reap()
    for job in requeued:
        send(job)
    released = [job for run_id in jobs.runs_with_waiting_jobs() for job in jobs.release_waiting(run_id)]
    for job in released:
        send(job)
    return {
        "requeued": len(requeued),
        "released": len(released),
        "resent": resend_lost_messages(),
        "tracking_replayed": replay_spool() if tracking_enabled() else 0,
    }


def resend_lost_messages() -> int:
    """Send again each job queued for longer than RESEND_GRACE_SECONDS whose message the broker lacks.

    The table is read before the broker: a job claimed in between is running, and a duplicate message
    for it is dropped by the claim guard, so every job still runs once.
    """
    stale = jobs.queued_since(utcnow() - timedelta(seconds=get_settings().resend_grace_seconds))
    if not stale:
        return 0
    pending = pending_task_ids(app, sorted(set(QUEUE_OF.values())))
    lost = [job for job in stale if job.task_id not in pending]
    for job in lost:
        log.warning("job %s attempt %s was queued with no message in the broker; sent again", job.job_id, job.attempt)
        send(job)
    return len(lost)


@inspect_command()
def worker_info(state: Any) -> dict[str, Any]:
    """The GPU this worker is pinned to (WORKER_GPU, else CUDA_VISIBLE_DEVICES) and its process id."""
    return {"gpu": worker_gpu(), "pid": os.getpid()}
