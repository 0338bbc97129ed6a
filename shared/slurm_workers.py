"""The gpu-queue workers submitted as SLURM jobs, as the job table records them: the dispatcher records what
it submits, a worker leaving at its time limit records its replacement, `dispatch workers stop` ends them.
SLURM itself says their state (services/slurm/sbatch.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update

from shared.db.engine import session_scope
from shared.db.models import Job, SlurmWorker, State, utcnow


@dataclass(frozen=True)
class Submitted:
    slurm_job_id: str
    options: dict[str, Any]
    replaces: str | None
    ended: bool


def record(slurm_job_id: str, options: dict[str, Any], replaces: str | None = None) -> None:
    with session_scope() as session:
        session.add(SlurmWorker(slurm_job_id=slurm_job_id, options=options, replaces=replaces))


def open_workers() -> list[Submitted]:
    """The SLURM workers not yet stopped or seen ended, oldest first."""
    with session_scope() as session:
        rows = session.scalars(select(SlurmWorker).where(SlurmWorker.ended_at.is_(None)).order_by(SlurmWorker.id))
        return [_submitted(row) for row in rows]


def find(slurm_job_id: str) -> Submitted | None:
    with session_scope() as session:
        row = session.scalar(select(SlurmWorker).where(SlurmWorker.slurm_job_id == slurm_job_id))
        return _submitted(row) if row else None


def end(slurm_job_ids: list[str]) -> None:
    """Stopped, or gone from SLURM: not listed any more, and never replaced."""
    if not slurm_job_ids:
        return
    with session_scope() as session:
        session.execute(
            update(SlurmWorker)
            .where(SlurmWorker.slurm_job_id.in_(slurm_job_ids), SlurmWorker.ended_at.is_(None))
            .values(ended_at=utcnow())
        )


def gpu_work_waiting() -> int:
    """Jobs of the gpu queue that are queued or wait on others: what a SLURM worker is kept for."""
    with session_scope() as session:
        waiting = (State.QUEUED, State.WAITING)
        return session.scalar(select(func.count()).where(Job.queue == "gpu", Job.state.in_(waiting))) or 0


def running_on(worker: str) -> int:
    """The jobs the Celery worker of that name runs now."""
    with session_scope() as session:
        return session.scalar(select(func.count()).where(Job.worker == worker, Job.state == State.RUNNING)) or 0


def _submitted(row: SlurmWorker) -> Submitted:
    return Submitted(row.slurm_job_id, dict(row.options), row.replaces, row.ended_at is not None)
