"""Record a run with its jobs and send the Celery messages of those that can start now."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared import jobs
from shared.db.engine import session_scope
from shared.db.models import State


class BrokerUnreachable(RuntimeError):
    pass


@dataclass(frozen=True)
class JobSpec:
    kind: str
    name: str
    task_name: str
    params: dict[str, Any] = field(default_factory=dict)
    stage: int = 0  # jobs of a later stage wait for the earlier stages to end


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
    """Send each job's message; if the broker cannot be reached, fail the job with a message saying so."""
    from celery.exceptions import BackendError
    from kombu.exceptions import OperationalError
    from redis.exceptions import RedisError

    from shared.enqueue import send
    from shared.settings import get_settings

    for ref in refs:
        try:
            send(ref)
        except (OperationalError, BackendError, RedisError, ConnectionError) as error:
            message = (
                f"cannot reach the broker at {get_settings().broker_url} ({error}); "
                "start the stack with `make up` or set BROKER_URL"
            )
            jobs.fail(ref.job_id, ref.attempt, message)
            raise BrokerUnreachable(message) from error


def any_worker_online(timeout: float = 1.0) -> bool:
    from shared.celery_app import app

    return bool(app.control.ping(timeout=timeout, limit=1))
