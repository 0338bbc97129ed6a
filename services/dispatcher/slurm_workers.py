"""`dispatch workers --slurm N`, `dispatch workers` and `dispatch workers stop` for the gpu-queue workers that
run as SLURM jobs: submitted and recorded, listed with SLURM's state beside the workers that answer,
cancelled."""

from __future__ import annotations

import ipaddress
import subprocess
from typing import Any
from urllib.parse import urlsplit

from services.slurm.sbatch import SlurmError, WorkerOptions, cancel, states, submit
from shared import slurm_workers
from shared.settings import get_settings


def submit_workers(count: int, options: WorkerOptions) -> list[str]:
    """`count` workers submitted, each recorded as soon as SLURM took it."""
    log_dir = get_settings().layout.logs_dir
    submitted = []
    for _ in range(count):
        job_id = submit(options, log_dir)
        slurm_workers.record(job_id, options.as_dict())
        submitted.append(job_id)
    return submitted


def loopback_services() -> list[str]:
    """The stack's services named by a loopback address: a compute node other than this one cannot reach them."""
    settings = get_settings()
    named = {"BROKER_URL": settings.broker, "DATABASE_URL": settings.db_url}
    found = []
    for variable, url in named.items():
        host = urlsplit(url).hostname
        if url.startswith("sqlite"):
            continue
        if host == "localhost" or (host and _is_loopback(host)):
            found.append(variable)
    return found


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listed() -> list[dict[str, Any]]:
    """The SLURM workers still open, with SLURM's state; those SLURM no longer knows are marked ended. Where
    SLURM cannot be asked (no squeue here, its controller down), they are listed as unknown: the workers that
    answer are listed all the same."""
    open_workers = slurm_workers.open_workers()
    if not open_workers:
        return []
    try:
        known = states([worker.slurm_job_id for worker in open_workers])
    except (SlurmError, OSError, subprocess.SubprocessError) as error:
        unknown = {"state": "unknown", "time_left": "-", "node": f"(SLURM not asked: {error})"}
        return [{"slurm_job": w.slurm_job_id, **unknown, "replaces": w.replaces} for w in open_workers]
    slurm_workers.end([worker.slurm_job_id for worker in open_workers if worker.slurm_job_id not in known])
    return [
        {
            "slurm_job": worker.slurm_job_id,
            "state": known[worker.slurm_job_id].state.lower(),
            "time_left": known[worker.slurm_job_id].time_left,
            "node": known[worker.slurm_job_id].node or known[worker.slurm_job_id].reason,
            "replaces": worker.replaces,
        }
        for worker in open_workers
        if worker.slurm_job_id in known
    ]


def stop_all() -> list[str]:
    """Every open SLURM worker ended (never replaced) and cancelled: SLURM sends each TERM, and a running job
    is handed back to the queue."""
    job_ids = [worker.slurm_job_id for worker in slurm_workers.open_workers()]
    slurm_workers.end(job_ids)
    cancel(job_ids)
    return job_ids
