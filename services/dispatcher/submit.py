"""Record a run with its first job and send that job's Celery message."""

from __future__ import annotations

from typing import Any

from shared import jobs
from shared.db.engine import session_scope


class BrokerUnreachable(RuntimeError):
    pass


def submit(kind: str, params: dict[str, Any], job_kind: str, job_name: str, task_name: str) -> int:
    with session_scope() as session:
        run = jobs.create_run(session, kind, params)
        job = jobs.ref(jobs.add_job(session, run.id, job_kind, job_name, task_name))
        run_id = run.id
    from celery.exceptions import BackendError
    from kombu.exceptions import OperationalError
    from redis.exceptions import RedisError

    from shared.enqueue import send
    from shared.settings import get_settings

    try:
        send(job)
    except (OperationalError, BackendError, RedisError, ConnectionError) as error:
        message = (
            f"cannot reach the broker at {get_settings().broker_url} ({error}); "
            "start the stack with `make up` or set BROKER_URL"
        )
        jobs.fail(job.job_id, job.attempt, message)
        raise BrokerUnreachable(message) from error
    return run_id


def any_worker_online(timeout: float = 1.0) -> bool:
    from shared.celery_app import app

    return bool(app.control.ping(timeout=timeout, limit=1))
