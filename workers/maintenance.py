"""Periodic care of the job table, and what a worker tells `dispatch workers` about itself."""

from __future__ import annotations

import os
from typing import Any

from celery.worker.control import inspect_command

from shared import jobs
from shared.celery_app import app
from shared.enqueue import send
from shared.tasknames import REAP
from workers.runtime import worker_gpu


@app.task(name=REAP)
def reap_lost_jobs() -> int:
    """Re-queue jobs whose worker stopped beating (Celery beat sends this every REAP_INTERVAL_SECONDS)."""
    requeued = jobs.reap()
    for job in requeued:
        send(job)
    return len(requeued)


@inspect_command()
def worker_info(state: Any) -> dict[str, Any]:
    """The GPU this worker is pinned to (WORKER_GPU, else CUDA_VISIBLE_DEVICES) and its process id."""
    return {"gpu": worker_gpu(), "pid": os.getpid()}
