"""A job task that ignores its soft time limit, for the hard-limit test: only the worker that
tests/services/test_reliability.py starts imports it (--include stubborn_task).

Run as a script, it records a run with one such job and sends its message: `stubborn_task.py SECONDS`.
"""

from __future__ import annotations

import contextlib
import sys
import time

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from shared.celery_app import app
from workers.runtime import JobContext, JobTask, Outcome, execute

NAME, QUEUE = "tests.stubborn", "stubborn"
SOFT_S, HARD_S = 2, 4


def _sleep_through_the_soft_limit(ctx: JobContext) -> Outcome:
    deadline = time.monotonic() + float(ctx.params["seconds"])
    while time.monotonic() < deadline:
        with contextlib.suppress(SoftTimeLimitExceeded):  # stubborn on purpose: only the hard limit stops it
            time.sleep(0.1)
    return Outcome(metrics={"slept": ctx.params["seconds"]})


@app.task(name=NAME, bind=True, base=JobTask, soft_time_limit=SOFT_S, time_limit=HARD_S)
def stubborn(self: Task, job_id: int, attempt: int) -> str:
    return execute(self, job_id, attempt, _sleep_through_the_soft_limit)


def submit(seconds: float) -> int:
    from shared import jobs
    from shared.db.engine import session_scope
    from shared.enqueue import send
    from shared.tasknames import INGEST_CONVERT

    with session_scope() as session:
        run = jobs.create_run(session, "stubborn", {})
        job = jobs.add_job(session, run.id, "stubborn", f"sleep {seconds} s", INGEST_CONVERT, {"seconds": seconds})
        job.task_name, job.queue = NAME, QUEUE
        session.flush()
        ref, run_id = jobs.ref(job), run.id
    send(ref)
    return run_id


if __name__ == "__main__":
    print(submit(float(sys.argv[1])))
