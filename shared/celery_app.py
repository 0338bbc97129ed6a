"""The one Celery app: queues, routes and the reliability settings of docs/design.md, named in one place.

The dispatcher imports this module to send tasks by name; only workers import the task modules.
"""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

from shared.defaults import IGNORED_CELERY_VARIABLES
from shared.settings import get_settings
from shared.tasknames import QUEUE_OF, REAP

# A user's, set for another project, would send this stack's processes elsewhere (docs/cli.md).
for variable in IGNORED_CELERY_VARIABLES:
    os.environ.pop(variable, None)

settings = get_settings()

app = Celery("fracatlas", broker=settings.broker, backend=settings.backend_url)
app.conf.update(
    # JSON only: no pickle from the broker.
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # A task is acknowledged after it ran, and re-delivered if its worker died under it.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    # A worker takes a message only when a pool process is free, before and after a reconnect (which
    # resets the broker's prefetch count): a queued fold never waits behind a busy GPU worker.
    worker_disable_prefetch=True,
    # Users read the job table; a task's return value goes to Flower in its event, not to the backend.
    task_ignore_result=True,
    # Events feed Flower.
    worker_send_task_events=True,
    task_send_sent_event=True,
    task_track_started=True,
    task_queues=(Queue("cpu"), Queue("gpu")),
    task_default_queue="cpu",
    task_routes={name: {"queue": queue} for name, queue in QUEUE_OF.items()},
    broker_transport_options={"visibility_timeout": settings.visibility_timeout_seconds},
    # Progress in the backend is best effort (workers/runtime.py): one try, so an outage never holds a job up.
    result_backend_transport_options={
        "visibility_timeout": settings.visibility_timeout_seconds,
        "retry_policy": {"max_retries": 0},
    },
    result_expires=7 * 24 * 3600,
    broker_connection_retry_on_startup=True,
    # A sender facing a dead broker gives up within seconds and says so, instead of hanging.
    task_publish_retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1},
    redis_socket_connect_timeout=3,
    broker_connection_timeout=3,
    # Through a broker outage running jobs go on; the connection is retried for as long as it takes.
    worker_cancel_long_running_tasks_on_connection_loss=False,
    broker_connection_retry=True,
    broker_connection_max_retries=None,
    include=[
        "workers.maintenance",
        "workers.ingest.tasks",
        "workers.nnunet.tasks",
        "workers.classifier.tasks",
        "workers.predict.tasks",
        "workers.evaluate.tasks",
        "workers.sweep.tasks",
        "workers.superres.tasks",
    ],
    # beat saves its schedule after every task it sends: the file's age is its health (services/docker/health.py).
    beat_sync_every=1,
    beat_schedule={
        "reap-lost-jobs": {"task": REAP, "schedule": settings.reap_interval_seconds},
    },
    timezone="UTC",
)
