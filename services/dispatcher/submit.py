"""Record a run with its jobs and send the Celery messages of those that can start now."""

from __future__ import annotations

from typing import Any

from shared import jobs
from shared.db.engine import session_scope
from shared.db.models import State
from shared.jobs import JobSpec


class BrokerUnreachable(RuntimeError):
    pass


def submit(kind: str, params: dict[str, Any], specs: list[JobSpec]) -> int:
    first = min(spec.stage for spec in specs)
    with session_scope() as session:
        run = jobs.create_run(session, kind, params)
        ready = []
        for spec in specs:
            state = State.QUEUED if spec.stage == first else State.WAITING
            job = jobs.add_job(session, run.id, spec.kind, spec.name, spec.task_name, spec.params, state, spec.stage)
            if state == State.QUEUED:
                ready.append(jobs.ref(job))
        run_id = run.id
    send_all(ready)
    return run_id


def send_all(refs: list[jobs.JobRef]) -> None:
    """Send each job's message, retrying for DISPATCH_RETRY_SECONDS; if the broker still cannot be reached,
    fail the job with a message naming the broker (never its password)."""
    from celery.exceptions import BackendError
    from kombu.exceptions import OperationalError
    from redis.exceptions import RedisError
    from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

    from shared.enqueue import send
    from shared.redact import redact_text, redact_url
    from shared.settings import get_settings

    settings = get_settings()
    unreachable = (OperationalError, BackendError, RedisError, ConnectionError)
    for ref in refs:
        try:
            Retrying(
                retry=retry_if_exception_type(unreachable),
                wait=wait_exponential(multiplier=0.5, max=3),
                stop=stop_after_delay(settings.dispatch_retry_seconds),
                reraise=True,
            )(send, ref)
        except unreachable as error:
            message = (
                f"cannot reach the broker at {redact_url(settings.broker)} ({redact_text(str(error))}); "
                "start the stack with `make up` or set BROKER_URL"
            )
            jobs.fail(ref.job_id, ref.attempt, message)
            raise BrokerUnreachable(message) from error
