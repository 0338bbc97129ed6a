"""What every job task does around its domain function: claim the row, beat, record the outcome.

A task body receives a JobContext and returns an Outcome; it knows the job table only through them.
The faults it survives, and how, are in docs/reliability.md: the job table is the truth, so Celery's
progress is best effort; the job table's writes wait out an outage; a cancelled job that is blocked
(in a read, say) is interrupted; a stopping worker hands its job back to the queue.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_init, worker_process_init, worker_process_shutdown
from celery.worker.request import Request

from shared import jobs
from shared.celery_app import app
from shared.db import transient
from shared.db.engine import engine_for, retry_window_s, session_scope
from shared.db.models import FINISHED, Job, State
from shared.enqueue import send
from shared.errors import UserFacingError
from shared.read_model import get_run
from shared.redact import redact_text, silence_dicom_libraries
from shared.settings import get_settings
from shared.time_limits import describe, time_limit
from workers.child import ChildStopped, ToolRun
from workers.stops import JobPruned, JobStopped, WorkerStopping
from workers.tracking.client import tracking_enabled
from workers.tracking.job import JobTracking
from workers.tracking.outbox import close_process_outbox

log = logging.getLogger(__name__)

PROGRESS_WRITE_INTERVAL_S = 1.0
# A cancelled job that ignored its interruption this long after it is killed with its pool process
# (Celery starts another; the message's redelivery is dropped by the claim guard).
KILL_AFTER_INTERRUPT_S = 10.0
INTERRUPT = signal.SIGUSR2  # billiard's pool uses SIGUSR1 for soft time limits


_running: JobContext | None = None  # the job this pool process runs now; the signal handlers read it


def _interrupt(signum: int, frame: FrameType | None) -> None:
    if _running is not None and _running.stopped.is_set() and not _importing(frame):
        raise JobStopped(f"job {_running.job_id} was interrupted after it was cancelled")


def _importing(frame: FrameType | None) -> bool:
    """Whether the interrupted code is inside an import. Raising there would leave the module half made in
    sys.modules (torch, say) and break every later job of the pool process; the job notices its cancel at
    its next check instead, or the watchdog ends the pool process."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _stop_for_shutdown(signum: int, _frame: Any) -> None:
    raise WorkerStopping()


_HANDLERS = {signal.SIGTERM: _stop_for_shutdown, INTERRUPT: _interrupt}


@contextmanager
def _running_job(ctx: JobContext) -> Iterator[None]:
    """While a body runs: TERM hands its job back, INTERRUPT stops it once cancelled.

    Installed per job, not at pool start: billiard sets its own TERM handler after Celery's
    worker_process_init, and it is put back as soon as the body ends.
    """
    global _running
    previous = {number: signal.signal(number, handler) for number, handler in _HANDLERS.items()}
    _running = ctx
    try:
        yield
    finally:
        _running = None
        for number, handler in previous.items():
            signal.signal(number, handler)


@worker_process_shutdown.connect
def _flush_tracking(**_: Any) -> None:
    """A stopping pool process sends what it has not sent to MLflow, or spools it for the reaper."""
    close_process_outbox()


@worker_init.connect
def _preload_tracking_client(**_: Any) -> None:
    """MLflow's client and matplotlib, imported once in the worker's main process before its pool forks:
    each pool process starts with them rather than importing them (1.7 s and 0.7 s of an idle core, far
    more of a busy one) in the threads that send its first job's figures and draw its first timeline,
    beside that job."""
    if tracking_enabled():
        import mlflow.entities  # noqa: F401
        import mlflow.tracking  # noqa: F401

        import workers.tracking.timeline  # noqa: F401 - matplotlib, for the runs' timelines


@worker_init.connect
def _silence_dicom_libraries(**_: Any) -> None:
    """Before the pool forks: the DICOM libraries' messages quote patient data (shared/redact.py)."""
    silence_dicom_libraries()


@worker_process_init.connect
def _forget_inherited_engines(**_: Any) -> None:
    # A prefork child must not share its parent's database connections.
    engine_for.cache_clear()


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
        self.tracking = JobTracking(job.id, job.run_id, job.attempt, job.worker or "unknown", job.gpu)
        self.stopped = threading.Event()
        self.noticed = threading.Event()  # the body asked and learnt that it must stop: it is stopping
        self._last_write = 0.0
        self._unsent: set[str] = set()  # what could not be recorded, each said once in the log

    @property
    def folder(self) -> Path:
        """This run's folder for logs and outputs."""
        return get_settings().layout.run_folder(self.run_id)

    def log_path(self, what: str) -> Path:
        return self.folder / f"j{self.job_id}-{what}.log"

    def tool_run(self, what: str) -> ToolRun:
        """A child tool's run for this job: its log `j<job>-<what>.log`, each line as the job's progress."""
        return ToolRun(self.log_path(what), lambda line: self.progress(0, None, line[-200:]), self.should_stop)

    def should_stop(self) -> bool:
        if self.stopped.is_set():
            self.noticed.set()
            return True
        return False

    def check(self) -> None:
        if self.should_stop():
            raise JobStopped(f"job {self.job_id} attempt {self.attempt} is no longer this worker's")

    def progress(self, step: int, total: int | None, message: str | None = None, force: bool = False) -> None:
        """Record progress in the job row, at most once a second, and in Celery's PROGRESS state.

        Both are best effort: through an outage the job goes on (its heartbeat keeps the lease), and the
        next call records the progress of then.
        """
        self.check()
        now = time.monotonic()
        if not force and now - self._last_write < PROGRESS_WRITE_INTERVAL_S:
            return
        self._last_write = now
        try:
            recorded = jobs.progress(self.job_id, self.attempt, step, total, message)
        except Exception as error:
            if not transient.is_transient(error):
                raise
            self._say_once("job table", error)
        else:
            self._unsent.discard("job table")
            if not recorded:
                self.stopped.set()
                self.check()
        try:
            self.task.update_state(
                state="PROGRESS", meta={"job_id": self.job_id, "step": step, "total": total, "message": message}
            )
        except Exception as error:  # noqa: BLE001 - any broker fault: Celery's copy of progress is optional
            self._say_once("broker", error)
        else:
            self._unsent.discard("broker")

    def _say_once(self, what: str, error: BaseException) -> None:
        if what not in self._unsent:
            self._unsent.add(what)
            log.warning(
                "job %s: progress not recorded in the %s (%s); the job goes on and tries again",
                self.job_id,
                what,
                redact_text(str(error)).splitlines()[0],
            )


def _watch(ctx: JobContext, done: threading.Event, main_thread: int) -> None:
    """Beat until the job ends; once it is cancelled, interrupt the job if it has not noticed (blocked in a
    read, say) within CANCEL_GRACE_SECONDS. A job that noticed is stopping in its own way (a fold's
    training process group gets its own grace)."""
    settings = get_settings()
    while not done.wait(settings.heartbeat_seconds):
        try:
            if not jobs.beat(ctx.job_id, ctx.attempt):
                ctx.stopped.set()
                break
        except Exception as error:  # noqa: BLE001 - an outage: the next beat tries again
            log.warning("job %s: heartbeat not recorded (%s)", ctx.job_id, redact_text(str(error)).splitlines()[0])
    if done.wait(settings.cancel_grace_seconds) or ctx.noticed.is_set():
        return
    log.warning("job %s is still busy after it was cancelled; interrupting it", ctx.job_id)
    signal.pthread_kill(main_thread, INTERRUPT)  # the main thread: a blocked read there returns EINTR
    if not done.wait(KILL_AFTER_INTERRUPT_S):
        log.error("job %s ignored its interruption; ending its pool process", ctx.job_id)
        os.kill(os.getpid(), signal.SIGKILL)


def worker_gpu() -> str | None:
    return get_settings().worker_gpu or os.environ.get("CUDA_VISIBLE_DEVICES")


def _record(function: Callable[..., Any], *args: Any) -> Any:
    """A lifecycle write that must land: retried through an outage of DB_RETRY_SECONDS."""
    return transient.call(retry_window_s(), function, *args)


def _send_released(run_id: int) -> None:
    try:
        for waiting in _record(jobs.release_waiting, run_id):
            send(waiting)
    except Exception as error:  # noqa: BLE001 - the reaper releases and sends them once the broker is back
        log.warning("run %s: next jobs not sent now (%s); the reaper sends them", run_id, redact_text(str(error)))


def execute(task: Task, job_id: int, attempt: int, body: Body, cleanup: Cleanup | None = None) -> str:
    worker = task.request.hostname or "unknown"
    if not _record(jobs.claim, job_id, attempt, worker, worker_gpu()):
        log.warning("dropped a delivery of job %s attempt %s: another delivery has it or it has ended", job_id, attempt)
        return "dropped"
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        ctx = JobContext(task, job)
    done = threading.Event()
    threading.Thread(target=_watch, args=(ctx, done, threading.get_ident()), daemon=True, name=f"beat-{job_id}").start()
    try:
        try:
            with _running_job(ctx):
                outcome = body(ctx)
        finally:
            done.set()
    except (JobStopped, ChildStopped):
        log.info("job %s attempt %s stopped: cancelled or re-queued", job_id, attempt)
        _clean_up_if_ended(ctx, cleanup)
        _end_tracking(ctx, "cancelled")
        return "stopped"
    except WorkerStopping:
        handed = _record(jobs.hand_back, job_id, attempt, f"handed back by {worker}, which was stopping")
        log.warning("job %s attempt %s handed back to the queue: the worker is stopping", job_id, attempt)
        if handed is not None:
            send_best_effort(handed)
        return "handed back"  # the job goes on in a later attempt, in the same MLflow run
    except JobPruned as pruned:
        if _record(jobs.prune, job_id, attempt, pruned.metrics, str(pruned)):
            _send_released(ctx.run_id)
        _end_tracking(ctx, "pruned")
        return "pruned"
    except SoftTimeLimitExceeded:
        _failed(ctx, f"ran past its time limit of {describe(task.name, task.soft_time_limit)} on {worker}", cleanup)
        return "failed"
    except UserFacingError as error:
        _failed(ctx, redact_text(str(error)), cleanup)
        return "failed"
    except Exception as error:
        log.exception("job %s attempt %s failed", job_id, attempt)
        _failed(ctx, redact_text(f"{type(error).__name__}: {error} (worker {worker}; traceback in its log)"), cleanup)
        return "failed"
    recorded = (outcome.metrics, outcome.artifacts, outcome.run_metrics, outcome.run_artifacts)
    if not _record(jobs.succeed, job_id, attempt, *recorded):
        log.info("job %s attempt %s finished after it was cancelled or re-queued; result dropped", job_id, attempt)
        return "stopped"
    ctx.tracking.metrics(outcome.metrics)
    ctx.tracking.metrics(outcome.run_metrics, on_run=True)
    _send_released(ctx.run_id)
    _end_tracking(ctx, "succeeded")
    return "succeeded"


def _failed(ctx: JobContext, message: str, cleanup: Cleanup | None) -> None:
    """Record the failure; a run that goes on without the job (a sweep's trial) may start its next stage."""
    _record(jobs.fail, ctx.job_id, ctx.attempt, message)
    _clean_up_if_ended(ctx, cleanup)
    _send_released(ctx.run_id)
    _end_tracking(ctx, "failed")


def _end_tracking(ctx: JobContext, state: str) -> None:
    """End the job's MLflow run; when the run has ended with it, its timeline and its end too. With
    tracking off nothing is read; otherwise the whole run only once it has ended."""
    if not ctx.tracking.enabled:
        return
    try:
        ended = _record(jobs.run_state, ctx.run_id) in FINISHED
        run = _record(get_run, ctx.run_id) if ended else None
    except Exception as error:  # noqa: BLE001 - tracking never costs a job
        log.warning("r%s: run not read for tracking (%s)", ctx.run_id, redact_text(str(error)))
        run = None
    ctx.tracking.finish(state, run)


def send_best_effort(job: jobs.JobRef) -> None:
    """Send a queued job's message; through a broker outage the reaper sends it later instead."""
    try:
        send(job)
    except Exception as error:  # noqa: BLE001 - the reaper sends a queued job's lost message again
        log.warning("job %s: message not sent (%s); the reaper sends it", job.job_id, redact_text(str(error)))


def _clean_up_if_ended(ctx: JobContext, cleanup: Cleanup | None) -> None:
    """Run the task's cleanup once its run has failed or was cancelled (not when merely re-queued)."""
    if cleanup is not None and _record(jobs.run_state, ctx.run_id) in (State.FAILED, State.CANCELLED):
        cleanup(ctx)


class JobRequest(Request):
    """Runs in the worker's main process: a job whose pool process was killed at its hard time limit
    fails with that limit named (the pool process could not record it)."""

    def on_timeout(self, soft: bool, timeout: float) -> None:
        super().on_timeout(soft, timeout)
        if soft:
            return
        try:
            job_id, attempt = int(self.kwargs["job_id"]), int(self.kwargs["attempt"])
            jobs.fail(job_id, attempt, f"killed at its hard time limit of {describe(self.name, timeout)}")
        except Exception:  # noqa: BLE001 - the lease re-queues the job if this cannot be recorded
            log.exception("could not record the hard time limit of task %s", self.id)


class JobTask(Task):
    Request = JobRequest


def job_task(name: str, cleanup: Cleanup | None = None) -> Callable[[Body], Task]:
    """Register `body` as the Celery task `name`, called with (job_id, attempt), with its time limits.

    `cleanup` removes what the body left behind when the run ends badly.
    """
    limit = time_limit(get_settings(), name)

    def register(body: Body) -> Task:
        @app.task(name=name, bind=True, base=JobTask, soft_time_limit=limit.soft_s, time_limit=limit.hard_s)
        def run_job(self: Task, job_id: int, attempt: int) -> str:
            return execute(self, job_id, attempt, body, cleanup)

        run_job.__doc__ = body.__doc__
        return run_job

    return register
