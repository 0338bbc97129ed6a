"""`runs` (one user command) and `jobs` (one unit of work), as docs/design.md draws them."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class State(enum.StrEnum):
    WAITING = "waiting"  # a job whose inputs other jobs of its run still produce
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PRUNED = "pruned"  # a sweep's trial that its pruner stopped early: an end by design, its curve kept


FINISHED = (State.SUCCEEDED, State.FAILED, State.CANCELLED, State.PRUNED)
OPEN = (State.WAITING, State.QUEUED, State.RUNNING)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: DateTime(timezone=True)}


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(16), default=State.QUEUED, index=True)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    artifacts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    # The MLflow run of this row (docs/tracking.md), made by the first job that logs.
    tracking_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    jobs: Mapped[list[Job]] = relationship(back_populates="run", order_by="Job.id")


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(80))
    # The Celery task that runs this job and its arguments, so the reaper can send it again.
    task_name: Mapped[str] = mapped_column(String(80))
    queue: Mapped[str] = mapped_column(String(16))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(16), default=State.QUEUED, index=True)
    # Jobs of a later stage wait until every job of the earlier stages has ended.
    stage: Mapped[int] = mapped_column(Integer, default=0)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    # Attempts handed back by a stopping worker (make down): they do not count against MAX_ATTEMPTS.
    handed_back: Mapped[int] = mapped_column(Integer, default=0)
    celery_task_id: Mapped[str | None] = mapped_column(String(64))
    worker: Mapped[str | None] = mapped_column(String(120))
    gpu: Mapped[str | None] = mapped_column(String(32))
    progress_step: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int | None] = mapped_column(Integer)
    progress_message: Mapped[str | None] = mapped_column(Text)
    heartbeat_at: Mapped[datetime | None]
    # When the job last became queued: one queued for longer with no message in the broker is sent again.
    queued_at: Mapped[datetime | None]
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    artifacts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    tracking_id: Mapped[str | None] = mapped_column(String(64))  # its nested MLflow run, kept across attempts
    # The attempts before this one that were handed back or lost: attempt, worker, started_at, ended_at, end.
    earlier_attempts: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    run: Mapped[Run] = relationship(back_populates="jobs")


class SlurmWorker(Base):
    """A gpu-queue worker submitted as a SLURM job (`dispatch workers --slurm`, docs/deployment.md): SLURM
    says its state, this row that the system submitted it and with what."""

    __tablename__ = "slurm_workers"

    id: Mapped[int] = mapped_column(primary_key=True)
    slurm_job_id: Mapped[str] = mapped_column(String(32), unique=True)
    # What it was submitted with (partition, time, account, extra sbatch arguments, keep, idle exit), so
    # that a worker leaving at its time limit submits its replacement alike.
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    replaces: Mapped[str | None] = mapped_column(String(32))  # the SLURM job that submitted it as its replacement
    submitted_at: Mapped[datetime] = mapped_column(default=utcnow)
    # `dispatch workers stop` cancelled it, or SLURM no longer knows it: it is not listed, nor replaced.
    ended_at: Mapped[datetime | None]
