"""The longer faults, behind the `chaos` marker (`make chaos`; not in `make test`): a real nnU-Net fold
through a Redis kill -9, and one-minute outages of Redis and of PostgreSQL under a training fold."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from conftest import TRAINING_DATASET, Stack, preprocess_training_dataset, wait_for
from test_reliability import (  # noqa: F401 - faults is the fixture
    FOLD_SECONDS,
    FaultStack,
    assert_each_job_once,
    faults,
    job_of,
    train_through_a_database_outage,
)

pytestmark = pytest.mark.chaos
MINUTE_S = 60
# Stand-in folds that outlast the outage by half a minute (each stand-in epoch is FOLD_SECONDS / 5).
OUTLASTING_EPOCHS = int((MINUTE_S + 30) / (FOLD_SECONDS / 5))


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_a_real_fold_trains_through_a_kill_9_of_redis(
    stack: Stack, system: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    preprocess_training_dataset(stack, tmp_path_factory.mktemp("chaos-release"))
    started = system.dispatch(
        "train", "--dataset-id", str(TRAINING_DATASET), "--folds", "2", "--epochs", "4", "--iterations", "6",
        "--json",
    )  # fmt: skip
    ref = json.loads(started.stdout)["ref"]

    def fold() -> dict:
        return job_of(json.loads(system.dispatch("show", ref, "--json").stdout), "fold")

    wait_for(lambda: fold()["progress"]["step"] >= 1, 300, "the fold's first epoch")
    ctl = FaultStack(stack.env, stack.data_root)
    pid = int(ctl.supervisorctl("pid", "redis").strip())
    os.kill(pid, signal.SIGKILL)
    run = wait_for(
        lambda: (
            (r := json.loads(system.dispatch("show", ref, "--json").stdout))["state"] in ("succeeded", "failed") and r
        ),
        600,
        "the run to end",
    )
    assert run["state"] == "succeeded", run["error"]
    assert fold()["attempt"] == 1 and all(job["attempt"] <= 2 for job in run["jobs"])
    assert run["metrics"]["test_dice_mean"] is not None and run["metrics"]["cv_dice_mean"] is not None


def test_a_fold_trains_through_a_minute_without_redis(faults: FaultStack) -> None:  # noqa: F811
    ref = faults.submit_folds(0, epochs=OUTLASTING_EPOCHS)
    wait_for(lambda: job_of(faults.show(ref), "fold")["progress"]["step"] >= 1, 30, "the fold's first epoch")
    faults.supervisorctl("stop", "redis")
    time.sleep(MINUTE_S)
    faults.supervisorctl("start", "redis")
    run = faults.wait_run(ref, 180)
    assert_each_job_once(faults, run)
    assert job_of(run, "fold")["attempt"] == 1


def test_a_fold_trains_through_a_minute_without_its_database(faults: FaultStack) -> None:  # noqa: F811
    train_through_a_database_outage(faults, 1, MINUTE_S, epochs=OUTLASTING_EPOCHS)
