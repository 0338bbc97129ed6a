"""gpu-queue workers as SLURM jobs against a real one-node SLURM (tests/slurm_cluster.py) and the test stack:
submitted, listed with SLURM's state beside the workers that answer, stopped with nothing left behind; and
each error a user meets in one line. The folds handed back at a time limit: tests/services/test_slurm_folds.py
(make test-slurm)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BIN, PROJECT, Stack, wait_for
from slurm_cluster import slurm_cluster

pytestmark = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with slurm_cluster(tmp_path_factory.mktemp("slurm")) as env:
        yield env


def dispatch(system: Stack, cluster: dict[str, str], *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**system.env, "SLURM_CONF": cluster["SLURM_CONF"], "NNUNET_DEVICE": "cpu", **env}
    return subprocess.run([str(BIN / "dispatch"), *args], env=environment, capture_output=True, text=True,
                          cwd=PROJECT, timeout=120)  # fmt: skip


def squeue(cluster: dict[str, str]) -> str:
    return subprocess.run(["squeue", "-h", "-o", "%i %T"], env=cluster, capture_output=True, text=True).stdout


def test_a_slurm_worker_joins_is_listed_and_stops(system: Stack, cluster: dict[str, str]) -> None:
    submitted = dispatch(system, cluster, "workers", "--slurm", "1", "--time", "10", "--json")
    assert submitted.returncode == 0, submitted.stderr
    (job,) = json.loads(submitted.stdout)["slurm_jobs"]

    def answering() -> dict | None:
        rows = json.loads(dispatch(system, cluster, "workers", "--json").stdout)
        mine = [row for row in rows if row["worker"] and row["slurm"] and row["slurm"]["slurm_job"] == job]
        return mine[0] if mine and mine[0]["queues"] else None  # consuming its queue, not only answering

    row = wait_for(answering, 90, "the SLURM job's worker to answer")
    assert row["worker"].startswith(f"gpu-slurm{job}@") and row["queues"] == ["gpu"] and row["concurrency"] == 1
    assert row["slurm"]["state"] == "running" and row["gpu"] in ("0", "1"), row
    shown = dispatch(system, cluster, "workers").stdout
    assert "SLURM JOB" in shown and re.search(rf"^{job} +running +\d", shown, re.MULTILINE), shown

    stopped = dispatch(system, cluster, "workers", "stop")
    assert stopped.stdout.strip() == f"cancelled SLURM job(s) {job}"
    wait_for(lambda: not squeue(cluster).strip(), 60, "SLURM to hold no job")
    wait_for(lambda: answering() is None, 30, "the worker to stop answering")
    assert dispatch(system, cluster, "workers", "stop").stdout.strip() == "no SLURM worker to cancel"
    log = Path(system.data_root / "logs" / f"slurm-worker-{job}.log").read_text()
    assert f"worker gpu-slurm{job}@" in log and "worker stopped (SIGTERM)" in log


def test_a_node_that_cannot_reach_the_stack_says_which_and_the_job_ends(system: Stack, cluster: dict[str, str]) -> None:
    closed = "redis://127.0.0.1:9/0"
    submitted = dispatch(system, cluster, "workers", "--slurm", "1", "--json", BROKER_URL=closed)
    (job,) = json.loads(submitted.stdout)["slurm_jobs"]
    log = system.data_root / "logs" / f"slurm-worker-{job}.log"
    wait_for(lambda: job not in squeue(cluster) and log.exists() and log.read_text(), 60, "the job to end")
    assert "cannot reach the broker at redis://127.0.0.1:9/0" in log.read_text()
    assert "set BROKER_URL to an address the compute nodes reach; the worker does not start" in log.read_text()
    rows = json.loads(dispatch(system, cluster, "workers", "--json").stdout)
    assert not [row for row in rows if row["slurm"] and row["slurm"]["slurm_job"] == job], "ended, not listed"


def test_the_workers_are_listed_where_slurm_cannot_be_asked(system: Stack, cluster: dict[str, str]) -> None:
    (job,) = json.loads(dispatch(system, cluster, "workers", "--slurm", "1", "--json").stdout)["slurm_jobs"]
    try:
        elsewhere = subprocess.run([str(BIN / "dispatch"), "workers", "--json"], env=system.env, capture_output=True,
                                   text=True, cwd=PROJECT, timeout=60)  # fmt: skip  # no SLURM_CONF: squeue fails
        assert elsewhere.returncode == 0, elsewhere.stderr
        rows = json.loads(elsewhere.stdout)
        assert any(row["worker"] and row["worker"].startswith("gpu0@") for row in rows), "the stack's own workers"
        (unknown,) = [row["slurm"] for row in rows if row["slurm"] and row["slurm"]["slurm_job"] == job]
        assert unknown["state"] == "unknown" and unknown["node"].startswith("(SLURM not asked: squeue failed")
    finally:
        dispatch(system, cluster, "workers", "stop")
    wait_for(lambda: not squeue(cluster).strip(), 60, "SLURM to hold no job")


def test_slurm_errors_are_one_line(system: Stack, cluster: dict[str, str]) -> None:
    refused = dispatch(system, cluster, "workers", "--slurm", "1", "--partition", "nope")
    assert refused.returncode == 1
    said = "Error: sbatch refused the worker: sbatch: error: invalid partition specified: nope; sbatch: error: "
    assert refused.stderr.strip() == said + "Batch job submission failed: Invalid partition name specified"
    missing = dispatch(system, cluster, "workers", "--slurm", "1", PATH=str(BIN))
    assert missing.returncode == 1 and missing.stderr.startswith("Error: no sbatch on PATH: run `dispatch workers")
    alone = dispatch(system, cluster, "workers", "--time", "1:00:00")
    assert alone.returncode == 2 and "--time goes with --slurm N" in alone.stderr
    assert not squeue(cluster).strip()
