"""Send a job's Celery message and remember its task id in the job row."""

from __future__ import annotations

from shared.jobs import JobRef, set_task_id


def send(job: JobRef) -> str:
    from shared.celery_app import app  # Celery is imported only by those who send.

    # Users read the job table, not Celery results: the sender never subscribes to a result.
    result = app.send_task(
        job.task_name,
        kwargs={"job_id": job.job_id, "attempt": job.attempt},
        queue=job.queue,
        ignore_result=True,
    )
    set_task_id(job.job_id, job.attempt, result.id)
    return result.id
