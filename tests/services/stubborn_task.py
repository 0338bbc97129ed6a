"""Job tasks that misbehave on purpose, for the time-limit and cancel tests: only the worker that
tests/services/test_reliability.py starts imports them (--include stubborn_task).

- `tests.stubborn` sleeps through its soft time limit: only the hard limit stops it.
- `tests.blocking_read` reads a FIFO that no one writes: it blocks in the kernel until interrupted.

Run as a script, it records a run with one such job and sends its message:
`stubborn_task.py stubborn SECONDS` or `stubborn_task.py blocking_read FIFO`; it prints the run's id.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from shared.celery_app import app
from workers.runtime import JobContext, JobTask, Outcome, execute

QUEUE = "stubborn"
STUBBORN_LIMITS_S = (2, 4)
BLOCKING_READ_LIMITS_S = (6, 9)


def _sleep_through_the_soft_limit(ctx: JobContext) -> Outcome:
    deadline = time.monotonic() + float(ctx.params["seconds"])
    while time.monotonic() < deadline:
        with contextlib.suppress(SoftTimeLimitExceeded):  # stubborn on purpose: only the hard limit stops it
            time.sleep(0.1)
    return Outcome(metrics={"slept": ctx.params["seconds"]})


def _read_a_fifo(ctx: JobContext) -> Outcome:
    return Outcome(metrics={"read": len(Path(ctx.params["fifo"]).read_bytes())})


@app.task(name="tests.stubborn", bind=True, base=JobTask, soft_time_limit=2, time_limit=4)
def stubborn(self: Task, job_id: int, attempt: int) -> str:
    return execute(self, job_id, attempt, _sleep_through_the_soft_limit)


@app.task(name="tests.blocking_read", bind=True, base=JobTask, soft_time_limit=6, time_limit=9)
def blocking_read(self: Task, job_id: int, attempt: int) -> str:
    return execute(self, job_id, attempt, _read_a_fifo)


def submit(task: str, params: dict[str, object]) -> int:
    from shared import jobs
    from shared.db.engine import session_scope
    from shared.enqueue import send
    from shared.tasknames import INGEST_CONVERT

    with session_scope() as session:
        run = jobs.create_run(session, task, {})
        # Created as a known task, then pointed at the test's own task and queue.
        job = jobs.add_job(session, run.id, task, task, INGEST_CONVERT, params)
        job.task_name, job.queue = f"tests.{task}", QUEUE
        session.flush()
        ref, run_id = jobs.ref(job), run.id
    send(ref)
    return run_id


if __name__ == "__main__":
    name, argument = sys.argv[1], sys.argv[2]
    print(submit(name, {"seconds": float(argument)} if name == "stubborn" else {"fifo": argument}))
