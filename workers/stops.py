"""How a job's work ends early, as plain exceptions: domain code raises or lets them through, and the task
wrapper (runtime.py) turns each into the job's end. Nothing here knows Celery."""

from __future__ import annotations

from typing import Any


class JobStopped(Exception):
    """The job was cancelled, or the reaper gave it to a later attempt: stop without recording."""


class JobPruned(Exception):
    """A sweep's trial that its pruner stopped: the job ends `pruned`, keeping `metrics` (its curve)."""

    def __init__(self, reason: str, metrics: dict[str, Any]) -> None:
        super().__init__(reason)
        self.reason, self.metrics = reason, metrics


class WorkerStopping(BaseException):
    """The worker is shutting down (SIGTERM): hand the job back to the queue.

    A BaseException, so that a task body's own `except Exception` cannot swallow it.
    """
