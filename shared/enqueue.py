"""Send a job's Celery message, under the task id its job row already holds."""

from __future__ import annotations

from shared.jobs import JobRef


def send(job: JobRef) -> None:
    from shared.celery_app import app  # Celery is imported only by those who send.

    # Users read the job table, not Celery results: the sender never subscribes to a result.
    app.send_task(
        job.task_name,
        kwargs={"job_id": job.job_id, "attempt": job.attempt},
        queue=job.queue,
        task_id=job.task_id,
        ignore_result=True,
    )
