"""The SLURM workers' whole day (`make test-slurm`, left out of `make test` for its minutes): a stack with
no gpu-queue worker of its own, two workers submitted to a real one-node SLURM (tests/slurm_cluster.py), two
nnU-Net folds trained at a tiny budget on them at once. One worker's time limit is cut short under its fold
(`scontrol update TimeLimit`, as an administrator would): SLURM signals it, its fold is handed back, and its
replacement (--keep) finishes the fold from its checkpoint. Every job runs to its end once; the idle
replacement ends by itself; `dispatch workers stop` leaves no SLURM job behind. The run's timeline is drawn
as docs/deployment.md shows it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    DATABASE_PASSWORD,
    PROJECT,
    STALL_S,
    TRAINING_DATASET,
    Stack,
    free_port,
    postgres_database,
    preprocess_training_dataset,
    wait_for,
)
from slurm_cluster import slurm_cluster

from workers.tracking.timeline import timeline_png

pytestmark = pytest.mark.slurm
# The short worker is signalled SIGNAL_BEFORE seconds before its limit; cut short, that moment has passed.
SIGNAL_BEFORE = 90
FOLD = ("--epochs", "16", "--iterations", "4", "--save-every", "1")


@pytest.fixture(scope="module")
def cluster_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """SLURM, and a stack whose gpu queue only SLURM's workers serve, its job table on PostgreSQL as
    docs/deployment.md advises for a cluster (the workers on the nodes write to it at once)."""
    database, drop = postgres_database(f"fracatlas_slurm_{free_port()}")
    with slurm_cluster(tmp_path_factory.mktemp("slurm")) as cluster:
        data_root = tmp_path_factory.mktemp("slurm-stack")
        env = {
            **cluster,
            "DATA_ROOT": str(data_root),
            "DATABASE_URL": database.replace("://postgres@", f"://postgres:{DATABASE_PASSWORD}@", 1),
            "FLOWER_PORT": str(free_port()),
            "FLOWER_BASIC_AUTH": "test:slurm-flower",
            "MLFLOW_TRACKING_URI": "none",
            "CPU_CONCURRENCY": "1",
            "GPU_WORKERS": "0",
            "NNUNET_DEVICE": "cpu",  # SLURM's stand-in GPUs set CUDA_VISIBLE_DEVICES
            "OMP_NUM_THREADS": "1",
            "nnUNet_n_proc_DA": "0",
            "nnUNet_def_n_proc": "1",
            "HEARTBEAT_SECONDS": "1",
            "LEASE_SECONDS": "60",
            "REAP_INTERVAL_SECONDS": "2",
        }
        up = subprocess.run([sys.executable, "-m", "services.local.stack", "up"], env=env, cwd=PROJECT,
                            capture_output=True, text=True, timeout=180)  # fmt: skip
        assert up.returncode == 0, up.stdout + up.stderr
        try:
            yield Stack(env, data_root)
        finally:
            subprocess.run([sys.executable, "-m", "services.local.stack", "down"], env=env, cwd=PROJECT, timeout=120)
            drop()


def squeue(stack: Stack) -> str:
    return subprocess.run(["squeue", "-h", "-o", "%i %T %L"], env=stack.env, capture_output=True, text=True).stdout


def used_seconds(stack: Stack, job: str) -> int:
    """How long the SLURM job has run (squeue's TimeUsed: M:SS, H:MM:SS or D-HH:MM:SS)."""
    used = subprocess.run(["squeue", "-h", "-j", job, "-O", "TimeUsed"], env=stack.env, capture_output=True,
                          text=True).stdout.strip()  # fmt: skip
    days, _, clock = used.rpartition("-")
    seconds = sum(int(part) * 60**power for power, part in enumerate(reversed(clock.split(":"))))
    return seconds + int(days or 0) * 86400


def show(stack: Stack, ref: str) -> dict:
    return json.loads(stack.dispatch("show", ref, "--json").stdout)


def test_two_folds_on_slurm_workers_and_a_hand_back_at_the_time_limit(cluster_stack: Stack, tmp_path: Path) -> None:
    stack = cluster_stack
    preprocess_training_dataset(stack, tmp_path / "release")
    long_job = json.loads(stack.dispatch("workers", "--slurm", "1", "--time", "20", "--json").stdout)["slurm_jobs"][0]
    short = stack.dispatch(
        "workers", "--slurm", "1", "--time", "20", "--signal-before", str(SIGNAL_BEFORE), "--keep", "1",
        "--idle-exit", "15", "--json",
    )  # fmt: skip
    short_job = json.loads(short.stdout)["slurm_jobs"][0]
    wait_for(lambda: squeue(stack).count("RUNNING") == 2, 60, "both SLURM jobs to run")
    wait_for(lambda: len(_answering(stack)) == 2, 90, "both SLURM workers to answer")

    started = stack.dispatch("train", "--dataset-id", str(TRAINING_DATASET), "--folds", "0-1", *FOLD, "--json")
    run = json.loads(started.stdout)
    folds = lambda: [job for job in show(stack, run["ref"])["jobs"] if job["kind"] == "fold"]  # noqa: E731
    wait_for(lambda: all(job["state"] == "running" for job in folds()), 60, "both folds to run at once")
    assert {job["worker"].split("@")[0] for job in folds()} == {f"gpu-slurm{long_job}", f"gpu-slurm{short_job}"}
    on_short = next(job for job in folds() if job["worker"].startswith(f"gpu-slurm{short_job}@"))
    wait_for(lambda: show(stack, on_short["ref"])["progress"]["step"] >= 2, STALL_S, "two epochs (checkpoints)")
    # The limit cut to a whole minute at least 30 s away: SLURM's USR1 (SIGNAL_BEFORE earlier) is due at once.
    limit = (used_seconds(stack, short_job) + 30) // 60 + 1
    subprocess.run(["scontrol", "update", f"JobId={short_job}", f"TimeLimit={limit}"], env=stack.env, check=True)

    finished = wait_for(
        lambda: (now := show(stack, run["ref"]))["state"] in ("succeeded", "failed", "cancelled") and now,
        STALL_S, "the run to end", progress=stack.work,
    )  # fmt: skip
    assert finished["state"] == "succeeded", finished["error"]
    handed = [job for job in finished["jobs"] if job["kind"] == "fold" and job["attempt"] > 1]
    assert len(handed) == 1, [(job["name"], job["attempt"], job["worker"]) for job in finished["jobs"]]
    fold = handed[0]
    short_log = (stack.data_root / "logs" / f"slurm-worker-{short_job}.log").read_text()
    assert "worker stopped (SIGUSR1)" in short_log, short_log[-2000:]
    replacement = re.search(r"its replacement, SLURM job (\d+)", short_log)[1]
    assert fold["attempt"] == 2 and fold["metrics"]["mode"] == "resumed"
    assert fold["worker"].startswith(f"gpu-slurm{replacement}@"), "finished by the replacement"
    for job in finished["jobs"]:  # every job ran to its end once
        assert job["state"] == "succeeded"
        if job["kind"] == "fold":
            assert Path(job["artifacts"]["log"]).read_text().count("Training done.") == 1, job["name"]

    # The replacements, idle with the queue empty, end by themselves; the long worker ends with `stop`.
    wait_for(lambda: len(squeue(stack).splitlines()) == 1, 120, "the idle replacements to end")
    assert stack.dispatch("workers", "stop").stdout.strip() == f"cancelled SLURM job(s) {long_job}"
    wait_for(lambda: not squeue(stack).strip(), 60, "SLURM to hold no job")

    picture = timeline_png(finished, tmp_path / "slurm-timeline.png")
    if target := os.environ.get("SLURM_TIMELINE_PNG"):  # make test-slurm SLURM_TIMELINE_PNG=docs/...
        shutil.copyfile(picture, target)


def _answering(stack: Stack) -> list[dict]:
    rows = json.loads(stack.dispatch("workers", "--json").stdout)
    return [row for row in rows if row["worker"] and row["slurm"] and row["queues"] == ["gpu"]]
