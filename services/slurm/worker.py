"""One SLURM job's gpu-queue worker, on its compute node (the batch script execs this).

It checks that the stack answers from this node (else its log says which service and the job ends), then
runs one Celery worker (`-c 1`, named `gpu-slurm<job id>@<node>`) on the GPU SLURM gave it. SLURM signals
it before the time limit (USR1, `--signal=B:USR1@N`) and at the limit or on `scancel` (TERM): either way the
worker's process group gets TERM, and its running job is handed back to the queue as `make down` hands it
back (a fold resumes from its checkpoint on the next worker). With `--keep`, a worker leaving while the gpu
queue has work submits its replacement, and a worker with nothing to do for `idle_exit` seconds ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from services.slurm.sbatch import WorkerOptions, submit
from shared import slurm_workers
from shared.data_root import DataRootMismatch, check_data_root
from shared.redact import redact_text, redact_url
from shared.settings import Settings, get_settings

POLL_S = 5.0
REACH_TIMEOUT_S = 5


def stack_problem(settings: Settings) -> str | None:
    """Which service of the stack this node cannot reach, or the data root it does not share, and why; None
    when all is well."""
    import redis
    import sqlalchemy

    try:
        redis.Redis.from_url(settings.broker, socket_connect_timeout=REACH_TIMEOUT_S).ping()
    except redis.RedisError as error:
        return (
            f"cannot reach the broker at {redact_url(settings.broker)} ({redact_text(str(error))}); set BROKER_URL "
            "to an address the compute nodes reach"
        )
    arguments: dict[str, Any] = {"connect_timeout": REACH_TIMEOUT_S} if "postgresql" in settings.db_url else {}
    try:
        with sqlalchemy.create_engine(settings.db_url, connect_args=arguments).connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    except sqlalchemy.exc.SQLAlchemyError as error:
        reason = redact_text(str(error.orig if hasattr(error, "orig") else error)).strip().splitlines()[0]
        return (
            f"cannot reach the job table at {redact_url(settings.db_url)} ({reason}); set DATABASE_URL to an "
            "address the compute nodes reach"
        )
    try:
        check_data_root(settings)  # the cluster's shared filesystem holds the stack's data root
    except DataRootMismatch as error:
        return str(error)
    return None


class Leaving:
    """SLURM's USR1 or TERM: the worker's process group is stopped once."""

    def __init__(self, worker: subprocess.Popen) -> None:
        self.worker, self.reason = worker, ""
        for number in (signal.SIGUSR1, signal.SIGTERM):
            signal.signal(number, self._signalled)

    def _signalled(self, number: int, _frame: Any) -> None:
        self.stop(signal.Signals(number).name)

    def stop(self, reason: str) -> None:
        if self.reason:
            return
        self.reason = reason
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(self.worker.pid, signal.SIGTERM)  # the pool processes hand their jobs back


def main() -> int:
    job, node = os.environ.get("SLURM_JOB_ID", "?"), socket.gethostname()
    settings = get_settings()
    problem = stack_problem(settings)
    if problem:
        print(f"SLURM job {job} on {node}: {problem}; the worker does not start", flush=True)
        with contextlib.suppress(Exception):  # where the job table answers; else `dispatch workers` ends it
            slurm_workers.end([job])
        return 1
    submitted = slurm_workers.find(job)
    options = WorkerOptions.from_dict(submitted.options) if submitted else WorkerOptions()
    name = f"gpu-slurm{job}@{node}"
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES") or os.environ.get("SLURM_JOB_GPUS") or ""
    command = [sys.executable, "-m", "celery", "-A", "shared.celery_app", "worker", "-Q", "gpu", "-c", "1",
               "-n", name, "-E", "--loglevel", "INFO"]  # fmt: skip
    print(f"SLURM job {job} on {node}: worker {name} on GPU {gpu or '-'}", flush=True)
    worker = subprocess.Popen(command, env={**os.environ, "WORKER_GPU": gpu}, start_new_session=True)
    leaving = Leaving(worker)
    idle_since: float | None = None
    while worker.poll() is None:
        time.sleep(POLL_S)
        if options.keep and not leaving.reason:
            busy = slurm_workers.gpu_work_waiting() or slurm_workers.running_on(name)
            idle_since = None if busy else (idle_since or time.monotonic())
            if idle_since is not None and time.monotonic() - idle_since >= options.idle_exit:
                leaving.stop(f"idle for {options.idle_exit} s with no gpu work")
    print(f"SLURM job {job}: worker stopped ({leaving.reason or f'exit status {worker.returncode}'})", flush=True)
    replace(job, options, leaving.reason, settings)
    slurm_workers.end([job])
    return 0


def replace(job: str, options: WorkerOptions, reason: str, settings: Settings) -> None:
    """A worker that SLURM stopped (not one stopped for idleness, nor by `dispatch workers stop`) is replaced
    while the gpu queue has work and fewer than --keep others of its submission are queued or running."""
    own = slurm_workers.find(job)
    if not options.keep or reason not in ("SIGUSR1", "SIGTERM") or (own and own.ended):
        return
    alike = options.as_dict()  # the workers of one submission (and their replacements) keep one another
    others = [w for w in slurm_workers.open_workers() if w.slurm_job_id != job and w.options == alike]
    if len(others) >= options.keep or slurm_workers.gpu_work_waiting() == 0:
        return
    replacement = submit(options, settings.layout.logs_dir)
    slurm_workers.record(replacement, options.as_dict(), replaces=job)
    print(f"SLURM job {job}: submitted its replacement, SLURM job {replacement}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
