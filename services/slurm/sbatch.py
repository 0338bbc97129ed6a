"""SLURM's own commands as the dispatcher and a leaving worker use them: `sbatch` a gpu-queue worker,
`squeue` the states of those submitted, `scancel` them. A refusal is SLURM's own message, in one line."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import UserFacingError

JOB_NAME = "fracatlas-gpu-worker"
PROJECT = Path(__file__).resolve().parents[2]
SLURM_TIMEOUT_S = 60


class SlurmError(UserFacingError):
    """SLURM's commands are missing, or SLURM refused what was asked; the message is its own."""


@dataclass(frozen=True)
class WorkerOptions:
    """How each worker is submitted; a replacement is submitted alike."""

    partition: str | None = None
    time: str | None = None  # SLURM's --time: 24:00:00, 1-00:00:00, 90 (minutes)
    account: str | None = None
    cpus: int | None = None  # --cpus-per-task, for nnU-Net's data augmentation processes
    sbatch_args: list[str] = field(default_factory=list)
    keep: int = 0  # replace a worker that leaves at its time limit while the gpu queue has work
    signal_before: int = 120  # seconds before the time limit that SLURM signals the worker (USR1)
    idle_exit: int = 300  # with keep: a worker with nothing to do for this long ends (no idle GPU held)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> WorkerOptions:
        return cls(**{key: value for key, value in values.items() if key in cls.__dataclass_fields__})


@dataclass(frozen=True)
class SlurmState:
    job_id: str
    state: str  # SLURM's: PENDING, RUNNING, COMPLETING, ...
    time_left: str  # SLURM's %L: 23:59:10, UNLIMITED, INVALID while pending
    node: str
    reason: str  # why it pends (Resources, Priority, ...), "None" when running


def slurm_command(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise SlurmError(
            f"no {name} on PATH: run `dispatch workers --slurm` on a node of the cluster (a login node) where "
            "SLURM's commands are"
        )
    return found


def batch_script() -> str:
    """The job: this checkout's interpreter (its venv, on the cluster's shared filesystem) running the worker.
    It execs, so that SLURM's signals (USR1 before the limit, TERM at it) reach the worker itself."""
    return (
        "#!/bin/bash\n"
        "# One gpu-queue worker of the FracAtlas job system (dispatch workers --slurm; docs/deployment.md)\n"
        f"cd {shlex.quote(str(PROJECT))}\n"
        f"exec {shlex.quote(sys.executable)} -m services.slurm.worker\n"
    )


def sbatch_arguments(options: WorkerOptions, log_dir: Path) -> list[str]:
    arguments = [
        "--parsable",
        f"--job-name={JOB_NAME}",
        "--ntasks=1",
        "--gres=gpu:1",
        f"--signal=B:USR1@{options.signal_before}",
        f"--output={log_dir}/slurm-worker-%j.log",
        "--export=ALL",  # the stack's settings, as the dispatcher has them (no password is written anywhere)
    ]
    for option, value in (("partition", options.partition), ("time", options.time), ("account", options.account)):
        if value:
            arguments.append(f"--{option}={value}")
    if options.cpus:
        arguments.append(f"--cpus-per-task={options.cpus}")
    return [*arguments, *options.sbatch_args]


def submit(options: WorkerOptions, log_dir: Path) -> str:
    """One worker submitted; its SLURM job id."""
    log_dir.mkdir(parents=True, exist_ok=True)
    command = [slurm_command("sbatch"), *sbatch_arguments(options, log_dir)]
    done = subprocess.run(command, input=batch_script(), capture_output=True, text=True, timeout=SLURM_TIMEOUT_S)
    if done.returncode != 0:
        said = "; ".join(line.strip() for line in done.stderr.splitlines() if line.strip())
        raise SlurmError(f"sbatch refused the worker: {said or f'exit status {done.returncode}'}")
    return done.stdout.strip().split(";")[0]


def states(job_ids: list[str]) -> dict[str, SlurmState]:
    """What SLURM says of those jobs it still knows (a job that ended is soon forgotten)."""
    if not job_ids:
        return {}
    command = [slurm_command("squeue"), "-h", f"--name={JOB_NAME}", "-o", "%i|%T|%L|%N|%r"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=SLURM_TIMEOUT_S)
    if done.returncode != 0:
        raise SlurmError(f"squeue failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}")
    found = {}
    for line in done.stdout.splitlines():
        job_id, state, time_left, node, reason = line.split("|", 4)
        if job_id in job_ids:
            found[job_id] = SlurmState(job_id, state, time_left, node, reason)
    return found


def cancel(job_ids: list[str]) -> None:
    """scancel: SLURM sends each job TERM (the worker hands its running job back), then KILL after KillWait."""
    if job_ids:
        subprocess.run([slurm_command("scancel"), *job_ids], capture_output=True, text=True, timeout=SLURM_TIMEOUT_S)
