"""What every job task does around its domain function: claim the row, beat, record the outcome.

A task body receives a JobContext and returns an Outcome; it knows the job table only through them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Task
from celery.signals import worker_process_init

from shared import jobs
from shared.celery_app import app
from shared.db.engine import engine_for, session_scope
from shared.db.models import Job, State
from shared.enqueue import send
from shared.settings import get_settings
from workers.child import ChildStopped
from workers.errors import UserFacingError

log = logging.getLogger(__name__)

PROGRESS_WRITE_INTERVAL_S = 1.0


@worker_process_init.connect
def _forget_inherited_engines(**_: Any) -> None:
    # A prefork child must not share its parent's database connections.
    engine_for.cache_clear()


class JobStopped(Exception):
    """The job was cancelled, or the reaper gave it to a later attempt: stop without recording."""


@dataclass
class Outcome:
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)
    # What the job found for the whole run: merged into the run's row.
    run_metrics: dict[str, Any] = field(default_factory=dict)
    run_artifacts: dict[str, Any] = field(default_factory=dict)


Body = Callable[["JobContext"], Outcome]
Cleanup = Callable[["JobContext"], None]


class JobContext:
    def __init__(self, task: Task, job: Job) -> None:
        self.task = task
        self.job_id = job.id
        self.attempt = job.attempt
        self.run_id = job.run_id
        self.stage = job.stage
        self.params: dict[str, Any] = dict(job.params)
        self.run_params: dict[str, Any] = dict(job.run.params)
        self.stopped = threading.Event()
        self._last_write = 0.0

    @property
    def folder(self) -> Path:
        """This run's folder for logs and outputs."""
        return get_settings().runs_dir / f"r{self.run_id}"

    def log_path(self, what: str) -> Path:
        return self.folder / f"j{self.job_id}-{what}.log"

    def should_stop(self) -> bool:
        return self.stopped.is_set()

    def check(self) -> None:
        if self.stopped.is_set():
            raise JobStopped(f"job {self.job_id} attempt {self.attempt} is no longer this worker's")

    def progress(self, step: int, total: int | None, message: str | None = None, force: bool = False) -> None:
        """Record progress in the job row and in Celery's PROGRESS state (for Flower), at most once a second."""
        self.check()
        now = time.monotonic()
        if not force and now - self._last_write < PROGRESS_WRITE_INTERVAL_S:
            return
        self._last_write = now
        if not jobs.progress(self.job_id, self.attempt, step, total, message):
            self.stopped.set()
            self.check()
        self.task.update_state(
            state="PROGRESS", meta={"job_id": self.job_id, "step": step, "total": total, "message": message}
        )


def _beat_until(ctx: JobContext, done: threading.Event) -> None:
    interval = get_settings().heartbeat_seconds
    while not done.wait(interval):
        if not jobs.beat(ctx.job_id, ctx.attempt):
            ctx.stopped.set()
            return


def worker_gpu() -> str | None:
    return get_settings().worker_gpu or os.environ.get("CUDA_VISIBLE_DEVICES")


def execute(task: Task, job_id: int, attempt: int, body: Body, cleanup: Cleanup | None = None) -> str:
    worker = task.request.hostname or "unknown"
    if not jobs.claim(job_id, attempt, worker, worker_gpu()):
        log.warning("dropped a delivery of job %s attempt %s: another delivery has it or it has ended", job_id, attempt)
        return "dropped"
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        ctx = JobContext(task, job)
    done = threading.Event()
    threading.Thread(target=_beat_until, args=(ctx, done), daemon=True, name=f"beat-{job_id}").start()
    try:
        outcome = body(ctx)
    except (JobStopped, ChildStopped):
        log.info("job %s attempt %s stopped: cancelled or re-queued", job_id, attempt)
        _clean_up_if_ended(ctx, cleanup)
        return "stopped"
    except UserFacingError as error:
        jobs.fail(job_id, attempt, str(error))
        _clean_up_if_ended(ctx, cleanup)
        return "failed"
    except Exception as error:
        log.exception("job %s attempt %s failed", job_id, attempt)
        jobs.fail(job_id, attempt, f"{type(error).__name__}: {error} (worker {worker}; traceback in its log)")
        _clean_up_if_ended(ctx, cleanup)
        return "failed"
    finally:
        done.set()
    if not jobs.succeed(
        job_id, attempt, outcome.metrics, outcome.artifacts, outcome.run_metrics, outcome.run_artifacts
    ):
        log.info("job %s attempt %s finished after it was cancelled or re-queued; result dropped", job_id, attempt)
        return "stopped"
    for waiting in jobs.release_waiting(ctx.run_id):
        send(waiting)
    return "succeeded"


def _clean_up_if_ended(ctx: JobContext, cleanup: Cleanup | None) -> None:
    """Run the task's cleanup once its run has failed or was cancelled (not when merely re-queued)."""
    if cleanup is not None and jobs.run_state(ctx.run_id) in (State.FAILED, State.CANCELLED):
        cleanup(ctx)


def job_task(name: str, cleanup: Cleanup | None = None) -> Callable[[Body], Task]:
    """Register `body` as the Celery task `name`, called with (job_id, attempt).

    `cleanup` removes what the body left behind when the run ends badly.
    """

    def register(body: Body) -> Task:
        @app.task(name=name, bind=True)
        def run_job(self: Task, job_id: int, attempt: int) -> str:
            return execute(self, job_id, attempt, body, cleanup)

        run_job.__doc__ = body.__doc__
        return run_job

    return register
