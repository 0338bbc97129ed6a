"""The job lifecycle. Every state change is one guarded UPDATE, so two deliveries of one Celery message,
a cancel racing a finish, or a late worker after the reaper re-queued its job can never both win.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, select, update
from sqlalchemy.orm import Session, aliased

from shared.db.engine import session_scope
from shared.db.models import OPEN, Job, Run, State, utcnow
from shared.settings import get_settings
from shared.tasknames import QUEUE_OF

log = logging.getLogger(__name__)

# Jobs whose failure is their own: the run goes on without them (a sweep's trials: one trial's error,
# like Optuna's own failed trials, costs that trial and not the search).
CONTAINED_KINDS = ("trial",)


class NotFound(LookupError):
    """A run or job id that the table does not hold."""


@dataclass(frozen=True)
class JobRef:
    """What a Celery message carries: which job, and which attempt of it; and the message's task id."""

    job_id: int
    attempt: int
    task_name: str
    queue: str
    task_id: str


@dataclass(frozen=True)
class JobSpec:
    """A job to add to a run: what `dispatch` plans and what a fanning-out job adds."""

    kind: str
    name: str
    task_name: str
    params: dict[str, Any] = field(default_factory=dict)
    stage: int = 0  # jobs of a later stage wait for the earlier stages to end


def new_task_id() -> str:
    """The Celery task id of an attempt, written with the attempt (in the same transaction) before its
    message is sent: a cancel can always revoke it, and sending costs no further write."""
    return str(uuid.uuid4())


def create_run(session: Session, kind: str, params: dict[str, Any]) -> Run:
    run = Run(kind=kind, params=params, state=State.QUEUED, metrics={}, artifacts={})
    session.add(run)
    session.flush()
    return run


def add_job(
    session: Session,
    run_id: int,
    kind: str,
    name: str,
    task_name: str,
    params: dict[str, Any] | None = None,
    state: State = State.QUEUED,
    stage: int = 0,
) -> Job:
    job = Job(
        stage=stage,
        run_id=run_id,
        kind=kind,
        name=name,
        task_name=task_name,
        queue=QUEUE_OF[task_name],
        params=params or {},
        state=state,
        attempt=1,
        celery_task_id=new_task_id(),
        metrics={},
        artifacts={},
        progress_step=0,
        queued_at=utcnow() if state == State.QUEUED else None,
    )
    session.add(job)
    session.flush()
    return job


def ref(job: Job) -> JobRef:
    return JobRef(job.id, job.attempt, job.task_name, job.queue, job.celery_task_id)


def _guarded(session: Session, job_id: int, attempt: int, states: tuple[State, ...], /, **values: Any) -> bool:
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.attempt == attempt, Job.state.in_(states)).values(**values)
    )
    return result.rowcount == 1


def claim(job_id: int, attempt: int, worker: str, gpu: str | None) -> bool:
    """queued -> running for this attempt only; False means another delivery already has it."""
    now = utcnow()
    with session_scope() as session:
        if not _guarded(
            session,
            job_id,
            attempt,
            (State.QUEUED,),
            state=State.RUNNING,
            worker=worker,
            gpu=gpu,
            started_at=now,
            heartbeat_at=now,
            finished_at=None,
            error=None,
        ):
            return False
        run_id = session.scalar(select(Job.run_id).where(Job.id == job_id))
        session.execute(
            update(Run).where(Run.id == run_id, Run.state == State.QUEUED).values(state=State.RUNNING, started_at=now)
        )
        return True


def beat(job_id: int, attempt: int) -> bool:
    """Refresh the lease; False means the job was cancelled or handed to a later attempt."""
    with session_scope() as session:
        return _guarded(session, job_id, attempt, (State.RUNNING,), heartbeat_at=utcnow())


def progress(job_id: int, attempt: int, step: int, total: int | None, message: str | None = None) -> bool:
    with session_scope() as session:
        return _guarded(
            session,
            job_id,
            attempt,
            (State.RUNNING,),
            progress_step=step,
            progress_total=total,
            progress_message=message,
            heartbeat_at=utcnow(),
        )


def succeed(
    job_id: int,
    attempt: int,
    metrics: dict[str, Any] | None = None,
    artifacts: dict[str, Any] | None = None,
    run_metrics: dict[str, Any] | None = None,
    run_artifacts: dict[str, Any] | None = None,
) -> bool:
    """running -> succeeded; what the job found for the whole run is merged into the run's row."""
    with session_scope() as session:
        job = _job(session, job_id)
        done = _end_running(
            session,
            job,
            attempt,
            State.SUCCEEDED,
            metrics=metrics or {},
            artifacts=artifacts or {},
            progress_step=job.progress_total or job.progress_step,
        )
        if done:
            if run_metrics or run_artifacts:
                # Locked: jobs of one run that finish together must not overwrite each other's merge.
                run = session.get(Run, job.run_id, with_for_update=True, populate_existing=True)
                assert run is not None
                run.metrics = {**run.metrics, **(run_metrics or {})}
                run.artifacts = {**run.artifacts, **(run_artifacts or {})}
                session.flush()
            _finish_run_if_done(session, job.run_id)
        return done


def fail(job_id: int, attempt: int, error: str) -> bool:
    """running -> failed; the run fails with the same message and its other open jobs are cancelled, unless
    the job is of a CONTAINED_KINDS kind: then the run goes on, and ends once its other jobs have."""
    now = utcnow()
    with session_scope() as session:
        if not _guarded(
            session,
            job_id,
            attempt,
            (State.QUEUED, State.RUNNING),
            state=State.FAILED,
            error=error,
            finished_at=now,
        ):
            return False
        job = session.get(Job, job_id)
        assert job is not None
        if job.kind in CONTAINED_KINDS:
            _finish_run_if_done(session, job.run_id)
            return True
        session.execute(
            update(Job)
            .where(Job.run_id == job.run_id, Job.state.in_(OPEN))
            .values(state=State.CANCELLED, error=f"cancelled because job {job_id} failed", finished_at=now)
        )
        session.execute(
            update(Run)
            .where(Run.id == job.run_id, Run.state.in_((State.QUEUED, State.RUNNING)))
            .values(state=State.FAILED, error=f"job {job_id} ({job.name}): {error}", finished_at=now)
        )
        return True


def prune(job_id: int, attempt: int, metrics: dict[str, Any], reason: str) -> bool:
    """running -> pruned: a trial its sweep's pruner stopped; what it measured is kept, the run goes on."""
    with session_scope() as session:
        job = _job(session, job_id)
        done = _end_running(session, job, attempt, State.PRUNED, metrics=metrics, progress_message=reason)
        if done:
            _finish_run_if_done(session, job.run_id)
        return done


def _job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job j{job_id}")
    return job


def _end_running(session: Session, job: Job, attempt: int, state: State, **values: Any) -> bool:
    """running -> `state` for this attempt, with what it measured."""
    now = utcnow()
    return _guarded(
        session, job.id, attempt, (State.RUNNING,), state=state, finished_at=now, heartbeat_at=now, **values
    )


def _finish_run_if_done(session: Session, run_id: int) -> None:
    """Once no job of the run is open: succeeded if its last stage succeeded, else cancelled.

    (A failed job has failed the run already, unless its failure was contained.) A run whose user cancelled
    one fold still succeeds when its evaluation ran on the other folds.
    """
    states = session.execute(select(Job.stage, Job.state).where(Job.run_id == run_id)).all()
    if not states or any(state in OPEN for _, state in states):
        return
    last = max(stage for stage, _ in states)
    succeeded = all(state == State.SUCCEEDED for stage, state in states if stage == last)
    session.execute(
        update(Run)
        .where(Run.id == run_id, Run.state.in_((State.QUEUED, State.RUNNING)))
        .values(
            state=State.SUCCEEDED if succeeded else State.CANCELLED,
            finished_at=utcnow(),
            error=None if succeeded else "cancelled by the user",
        )
    )


def release_waiting(run_id: int) -> list[JobRef]:
    """Queue the run's waiting jobs of the earliest waiting stage once every earlier job has ended.

    Called by each job as it ends; the guard lets exactly one caller release each waiting job.
    """
    earlier = aliased(Job)
    released = []
    with session_scope() as session:
        stage = session.scalar(
            select(Job.stage).where(Job.run_id == run_id, Job.state == State.WAITING).order_by(Job.stage).limit(1)
        )
        if stage is None:
            return []
        waiting = session.scalars(
            select(Job).where(Job.run_id == run_id, Job.state == State.WAITING, Job.stage == stage)
        ).all()
        for job in waiting:
            result = session.execute(
                update(Job)
                .where(
                    Job.id == job.id,
                    Job.state == State.WAITING,
                    ~exists().where(and_(earlier.run_id == run_id, earlier.stage < stage, earlier.state.in_(OPEN))),
                    ~exists().where(
                        and_(
                            earlier.run_id == run_id,
                            earlier.state == State.FAILED,
                            earlier.kind.not_in(CONTAINED_KINDS),
                        )
                    ),
                )
                .values(state=State.QUEUED, queued_at=utcnow())
            )
            if result.rowcount == 1:
                released.append(ref(job))
    return released


def run_state(run_id: int) -> str:
    with session_scope() as session:
        state = session.scalar(select(Run.state).where(Run.id == run_id))
        if state is None:
            raise NotFound(f"run {run_id}")
        return state


@dataclass(frozen=True)
class Cancelled:
    jobs: int
    task_ids: list[str]  # to revoke, so that workers skip messages still queued


def cancel(run_id: int | None = None, job_id: int | None = None) -> Cancelled:
    """Cancel every open job of a run (the run ends cancelled), or one job (the run goes on without it)."""
    now = utcnow()
    with session_scope() as session:
        if job_id is not None:
            job = session.get(Job, job_id)
            if job is None:
                raise NotFound(f"job j{job_id}")
            condition = Job.id == job_id
            run_id = job.run_id
        elif session.get(Run, run_id) is None:
            raise NotFound(f"run r{run_id}")
        else:
            condition = Job.run_id == run_id
        task_ids = [t for t in session.scalars(select(Job.celery_task_id).where(condition, Job.state.in_(OPEN))) if t]
        cancelled = session.execute(
            update(Job)
            .where(condition, Job.state.in_(OPEN))
            .values(state=State.CANCELLED, error="cancelled by the user", finished_at=now)
        ).rowcount
        if job_id is None:
            session.execute(
                update(Run)
                .where(Run.id == run_id, Run.state.in_((State.QUEUED, State.RUNNING)))
                .values(state=State.CANCELLED, error="cancelled by the user", finished_at=now)
            )
        else:
            _finish_run_if_done(session, run_id)
        return Cancelled(cancelled, task_ids)


def retry(job_id: int) -> JobRef:
    """Queue a failed or cancelled job again as its next attempt; the run's later stages wait for it again
    (and run again where they had ended: a sweep's end scores its best trial anew)."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFound(f"job j{job_id}")
        if job.state not in (State.FAILED, State.CANCELLED):
            raise ValueError(f"job j{job_id} is {job.state}; only a failed or cancelled job can be retried")
        attempt, run_id, stage, task_id = job.attempt, job.run_id, job.stage, new_task_id()
        again = _next_attempt(job, task_id, utcnow(), str(job.state))
        if not _guarded(
            session, job_id, attempt, (State.FAILED, State.CANCELLED), **again,
            error=None, finished_at=None, progress_message=f"retry of attempt {attempt}",
        ):  # fmt: skip
            raise ValueError(f"job j{job_id} changed while it was being retried; look again with `dispatch show`")
        later = session.scalars(
            select(Job).where(
                Job.run_id == run_id, Job.stage > stage, Job.state.in_((State.CANCELLED, State.SUCCEEDED))
            )
        )
        for waiting in later:
            # A new task id: the old one may have been revoked by a cancel, and workers skip revoked ids.
            waiting.state, waiting.error, waiting.finished_at = State.WAITING, None, None
            waiting.celery_task_id = new_task_id()
        session.execute(update(Run).where(Run.id == run_id).values(state=State.RUNNING, error=None, finished_at=None))
        return JobRef(job_id, attempt + 1, job.task_name, job.queue, task_id)


def reap(now: datetime | None = None) -> list[JobRef]:
    """Re-queue running jobs whose heartbeat is older than the lease, as the next attempt.

    A job that has used up its attempts fails instead, with a message saying so.
    """
    settings = get_settings()
    now = now or utcnow()
    deadline = now - timedelta(seconds=settings.lease_seconds)
    requeued: list[JobRef] = []
    exhausted: list[tuple[int, int, str]] = []
    with session_scope() as session:
        lost = session.scalars(select(Job).where(Job.state == State.RUNNING, Job.heartbeat_at < deadline)).all()
        for job in lost:
            if job.attempt - job.handed_back >= settings.max_attempts:
                exhausted.append(
                    (
                        job.id,
                        job.attempt,
                        (
                            f"lost its worker ({job.worker}) on each of {job.attempt - job.handed_back} attempts; "
                            "read that worker's log (make logs), fix the cause and dispatch the run again"
                        ),
                    )
                )
                continue
            # Read before the UPDATE: the session refreshes `job` with the new values.
            job_id, attempt, worker, task_id = job.id, job.attempt, job.worker, new_task_id()
            if _guarded(
                session, job_id, attempt, (State.RUNNING,), **_next_attempt(job, task_id, now, "lost"),
                progress_message=f"re-queued: worker {worker} stopped beating",
            ):  # fmt: skip
                log.warning("job %s lost with worker %s; re-queued as attempt %s", job_id, worker, attempt + 1)
                requeued.append(JobRef(job_id, attempt + 1, job.task_name, job.queue, task_id))
    for job_id, attempt, message in exhausted:
        fail(job_id, attempt, message)
    return requeued


def _next_attempt(job: Job, task_id: str, now: datetime, end: str) -> dict[str, Any]:
    """A job's row as it goes back to the queue as its next attempt, under a new task id; the attempt that
    ended (`end`: handed back, lost, failed, cancelled) is kept for the run's timeline."""
    ended = {
        "attempt": job.attempt,
        "worker": job.worker,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "ended_at": (job.finished_at or now).isoformat(),
        "end": end,
    }
    return {
        "earlier_attempts": [*(job.earlier_attempts or []), ended],
        "state": State.QUEUED,
        "attempt": job.attempt + 1,
        "celery_task_id": task_id,
        "worker": None,
        "gpu": None,
        "heartbeat_at": None,
        "queued_at": now,
    }


def hand_back(job_id: int, attempt: int, reason: str) -> JobRef | None:
    """running -> queued as the next attempt, by a worker that is stopping; it costs no attempt."""
    task_id = new_task_id()
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or not _guarded(
            session, job_id, attempt, (State.RUNNING,), **_next_attempt(job, task_id, utcnow(), "handed back"),
            handed_back=job.handed_back + 1, progress_message=reason,
        ):  # fmt: skip
            return None
        return JobRef(job_id, attempt + 1, job.task_name, job.queue, task_id)


def queued_since(before: datetime) -> list[JobRef]:
    """Jobs queued before `before`: candidates for a message that the broker lost."""
    with session_scope() as session:
        queued = session.scalars(
            select(Job).where(Job.state == State.QUEUED, (Job.queued_at < before) | Job.queued_at.is_(None))
        ).all()
        return [ref(job) for job in queued]


def runs_with_waiting_jobs() -> list[int]:
    """Runs that still hold waiting jobs: release_waiting() queues those whose earlier stages all ended."""
    with session_scope() as session:
        return list(
            session.scalars(
                select(Job.run_id)
                .join(Run, Run.id == Job.run_id)
                .where(Job.state == State.WAITING, Run.state.in_((State.QUEUED, State.RUNNING)))
                .distinct()
            )
        )


def fan_out(run_id: int, children: list[JobSpec], then: JobSpec) -> list[JobRef]:
    """Add `children` (queued) and `then` (waiting for them) to a run, once: a re-delivered parent finds
    them made and gets back the children still queued, to send again."""
    with session_scope() as session:
        made = session.scalar(
            select(Job.id).where(Job.run_id == run_id, Job.kind == then.kind, Job.stage == then.stage)
        )
        if made is not None:
            queued = select(Job).where(Job.run_id == run_id, Job.stage < then.stage, Job.state == State.QUEUED)
            return [ref(job) for job in session.scalars(queued)]
        added = [
            add_job(session, run_id, spec.kind, spec.name, spec.task_name, spec.params, stage=spec.stage)
            for spec in children
        ]
        add_job(session, run_id, then.kind, then.name, then.task_name, then.params, State.WAITING, then.stage)
        return [ref(job) for job in added]


def first_unfinished(run_id: int, kind: str) -> tuple[int, str, str] | None:
    """(id, name, state) of a job of `kind` in the run that did not succeed, if any."""
    with session_scope() as session:
        row = session.execute(
            select(Job.id, Job.name, Job.state).where(
                Job.run_id == run_id, Job.kind == kind, Job.state != State.SUCCEEDED
            )
        ).first()
        return (row.id, row.name, row.state) if row else None


def has_job(run_id: int, kind: str) -> bool:
    with session_scope() as session:
        return session.scalar(select(Job.id).where(Job.run_id == run_id, Job.kind == kind).limit(1)) is not None
