"""nnU-Net v2 through the job system, on two CPU-backed gpu-queue workers with a tiny trainer:
preprocess, folds in parallel, progress, cancel, a worker killed mid-fold, and the test-set Dice."""

from __future__ import annotations

import json
import os
import signal
from datetime import datetime
from pathlib import Path

import pytest
from conftest import STALL_S, Stack, preprocess_training_dataset, wait_for
from conftest import TINY_TRAINER as TINY
from conftest import TRAINING_DATASET as DATASET
from tracking_reads import (
    download_png,
    mlflow_run_of,
    nested_runs,
    steps,
    uploaded,
    versions_of,
    wait_for_mlflow,
)

# Training is shown on the SQLite stack; the job table itself is tested on both databases.
pytestmark = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def show(system: Stack, ref: str) -> dict:
    return json.loads(system.dispatch("show", ref, "--json").stdout)


def fold_of(system: Stack, run: dict) -> dict:
    """The (only) fold job of a training run, as it is now."""
    return next(job for job in show(system, run["ref"])["jobs"] if job["kind"] == "fold")


def interval(job: dict) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(job["started_at"]), datetime.fromisoformat(job["finished_at"])


@pytest.fixture(scope="module")
def preprocessed(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    preprocess_training_dataset(stack, tmp_path_factory.mktemp("train-release"))
    return stack


def test_train_needs_preprocessing_first(system: Stack) -> None:
    result = system.dispatch("train", "--dataset-id", "401", "--folds", "0")
    assert result.returncode == 1 and "run `dispatch preprocess --dataset-id 401` first" in result.stderr


def assert_tracked_in_mlflow(system: Stack, run: dict, tmp_path: Path) -> None:
    """The run in MLflow: its request, a nested run per job with one entry per epoch, the final figures, the
    pictures and the fold set as a registered model version."""
    parent = mlflow_run_of(system, run)
    assert parent.info.status == "FINISHED" and parent.data.params["folds"] == "[0, 1]"
    assert run["artifacts"]["mlflow"].endswith(f"/runs/{parent.info.run_id}"), "dispatch show names the run"
    jobs = wait_for_mlflow(system, lambda: (found := nested_runs(system, parent)) and len(found) == 3 and found, "jobs")
    assert set(jobs) == {"fold 0", "fold 1", "ensemble + test Dice"}
    for name in ("fold 0", "fold 1"):
        fold = jobs[name]
        assert fold.data.tags["worker"].startswith("gpu") and fold.data.tags["attempt"] == "1"
        for key in ("train_loss", "val_loss", "pseudo_dice", "pseudo_dice_ema", "learning_rate", "epoch_time_s"):
            assert steps(system, fold.info.run_id, key) == [0, 1], (name, key)
        assert 0 <= fold.data.metrics["validation_dice"] <= 1
        uploaded(system, fold.info.run_id, {"progress.png"})
    figures = parent.data.metrics
    assert figures["test_dice_mean"] == run["metrics"]["test_dice_mean"] and "cv_dice_mean" in figures
    assert any(key.startswith("test_dice_per_case/") for key in figures) and "folds/0" in figures
    pictures = {"test_cases/test_case_best.png", "timeline.png", "fold_0/progress.png"}
    uploaded(system, parent.info.run_id, pictures)
    for path in ("test_cases/test_case_best.png", "timeline.png", "fold_0/progress.png"):
        download_png(system, parent.info.run_id, path, tmp_path)
    (mine,) = versions_of(system, f"Dataset{DATASET}_FracAtlas-nnunet", f"r{run['id']}")
    assert mine.tags["folds"] == "0,1"


def assert_postprocessing_applied(metrics: dict, artifacts: dict) -> None:
    """nnU-Net chose its postprocessing on the cross-validation; the test prediction is the raw ensemble's
    with exactly that applied."""
    import pickle

    import numpy as np

    from workers.nnunet.nifti import read_case

    chosen = json.loads(Path(artifacts["inference_information"]).read_text())["best_model_or_ensemble"]
    assert chosen["postprocessing_file"] == artifacts["postprocessing"]
    assert metrics["postprocessing"]["cv_dice_before"] == chosen["result_on_crossval_pre_pp"]
    with open(artifacts["postprocessing"], "rb") as handle:
        functions, arguments = pickle.load(handle)
    raw, postprocessed = Path(artifacts["test_predictions_raw"]), Path(artifacts["test_predictions"])
    for prediction in sorted(raw.glob("*.nii.gz")):
        expected = read_case(prediction)
        for function, kwargs in zip(functions, arguments, strict=True):
            expected = function(expected, **kwargs)
        assert np.array_equal(read_case(postprocessed / prediction.name), expected), prediction.name


def test_folds_train_in_parallel_and_the_ensemble_is_evaluated(
    preprocessed: Stack, system: Stack, tmp_path: Path
) -> None:
    result = system.dispatch("train", "--dataset-id", str(DATASET), "--folds", "0-1", *TINY, "--wait", "--json")
    run = json.loads(result.stdout)
    assert result.returncode == 0, run["error"]
    folds = [job for job in run["jobs"] if job["kind"] == "fold"]
    assert {job["worker"].split("@")[0] for job in folds} == {"gpu0", "gpu1"}
    (start0, end0), (start1, end1) = interval(folds[0]), interval(folds[1])
    assert start0 < end1 and start1 < end0, "the two folds ran at the same time"
    for job in folds:
        assert job["progress"]["step"] == job["progress"]["total"] == 2
        assert "epoch 2/2" in job["progress"]["message"] and "s/epoch" in job["progress"]["message"]
        assert job["metrics"]["mode"] == "trained" and 0 <= job["metrics"]["validation_dice"] <= 1
        assert Path(job["artifacts"]["checkpoint_final"]).exists()
        assert Path(job["artifacts"]["validation_summary"]).exists()
    metrics = run["metrics"]
    summary = json.loads(Path(run["artifacts"]["test_summary"]).read_text())
    assert metrics["test_dice_mean"] == summary["foreground_mean"]["Dice"], "nnU-Net's own evaluator"
    assert metrics["test_cases"] == len(metrics["test_dice_per_case"]) >= 1
    assert set(metrics["folds"]) == {"0", "1"} and metrics["folds_used"] == [0, 1]
    assert metrics["test_fractured_cases"] >= 1 and metrics["test_non_fractured_cases"] >= 1, "negatives in test"
    assert metrics["test_fractured_cases"] + metrics["test_non_fractured_cases"] == metrics["test_cases"]
    assert 0 <= metrics["test_false_positive_share"] <= 1 and "dice_fractured" in metrics["test_intervals"]
    assert metrics["without_postprocessing"]["test_cases"] == metrics["test_cases"]
    assert_postprocessing_applied(metrics, run["artifacts"])
    shown = system.dispatch("show", run["ref"]).stdout
    assert "nnUNetv2_find_best_configuration" in shown and "Dice on fractured cases" in shown and "fold 1" in shown
    assert_tracked_in_mlflow(system, run, tmp_path)

    again = json.loads(system.dispatch("train", "--dataset-id", str(DATASET), "--folds", "0", *TINY, "--json").stdout)
    fold = wait_for(
        lambda: (j := fold_of(system, again))["state"] == "succeeded" and j,
        STALL_S,
        "fold 0 again",
        progress=system.work,
    )
    assert fold["metrics"]["mode"] == "already trained", "a fold with a final checkpoint is not trained again"
    assert system.dispatch("cancel", again["ref"]).returncode == 0  # its evaluation was shown above


def test_cancel_stops_one_fold_and_the_other_goes_on(preprocessed: Stack, system: Stack) -> None:
    started = system.dispatch(
        "train", "--dataset-id", str(DATASET), "--folds", "2,3", "--epochs", "200", "--iterations", "3", "--json"
    )
    run = json.loads(started.stdout)
    fold2, fold3 = (job["ref"] for job in run["jobs"] if job["kind"] == "fold")
    wait_for(
        lambda: all(show(system, ref)["progress"]["step"] >= 1 for ref in (fold2, fold3)),
        timeout=STALL_S,
        what="both folds to finish an epoch",
        progress=system.work,
    )
    assert _training(2) and _training(3), "each fold's nnUNetv2_train runs (the command line the waits below look for)"
    cancelled = system.dispatch("cancel", fold2)
    assert cancelled.returncode == 0 and "1 open job(s) cancelled" in cancelled.stdout
    wait_for(lambda: not _training(2), timeout=30, what="fold 2's nnUNetv2_train to stop")
    assert _training(3), "fold 3's nnUNetv2_train still runs"
    step = show(system, fold3)["progress"]["step"]
    wait_for(
        lambda: show(system, fold3)["progress"]["step"] > step,
        timeout=STALL_S,
        what="fold 3 to go on",
        progress=system.work,
    )
    assert show(system, fold3)["state"] == "running" and show(system, fold2)["state"] == "cancelled"
    assert system.dispatch("cancel", run["ref"]).returncode == 0
    wait_for(lambda: not _training(3), timeout=30, what="fold 3's nnUNetv2_train to stop")
    assert show(system, run["ref"])["state"] == "cancelled"


def test_a_fold_whose_worker_is_killed_resumes_from_its_checkpoint(
    preprocessed: Stack, system: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = system.dispatch(
        "train",
        "--dataset-id",
        str(DATASET),
        "--folds",
        "4",
        "--epochs",
        "6",
        "--iterations",
        "3",
        "--save-every",
        "1",
        "--json",
    )
    run = json.loads(started.stdout)
    (fold,) = (job["ref"] for job in run["jobs"] if job["kind"] == "fold")
    job = wait_for(
        lambda: (j := show(system, fold))["progress"]["step"] >= 2 and j,
        timeout=STALL_S,
        what="two epochs (and a checkpoint) of fold 4",
        progress=system.work,
    )
    workers = json.loads(system.dispatch("workers", "--json").stdout)
    victim = next(row["pid"] for row in workers if row["worker"] == job["worker"])
    for pid in [victim, *descendants(victim)]:  # the worker's whole process tree, training included
        os.kill(pid, signal.SIGKILL)
    fold_job = wait_for(
        lambda: (j := fold_of(system, run))["state"] in ("succeeded", "failed") and j,
        timeout=STALL_S,
        what="the fold to be re-queued and resumed",
        progress=system.work,
    )
    assert fold_job["state"] == "succeeded", fold_job["error"]
    # The evaluation is shown by the test above: cancelled once it runs, so that the run ends in MLflow too.
    wait_for(lambda: any(j["state"] == "running" for j in show(system, run["ref"])["jobs"]), 60, "the evaluation")
    assert system.dispatch("cancel", run["ref"]).returncode == 0
    finished = show(system, run["ref"])
    assert fold_job["attempt"] == 2 and fold_job["metrics"]["mode"] == "resumed"
    log = Path(fold_job["artifacts"]["log"]).read_text()
    assert log.count("Training done.") == 1, "the fold finished exactly once"
    # In MLflow the resumed fold went on in its own run: each of its six epochs logged exactly once.
    parent = mlflow_run_of(system, finished)
    fold_run = wait_for_mlflow(system, lambda: nested_runs(system, parent).get("fold 4"), "fold 4")
    assert fold_run.data.tags["attempt"] == "2"
    wait_for_mlflow(system, lambda: steps(system, fold_run.info.run_id, "train_loss") == list(range(6)), "six steps")
    assert steps(system, fold_run.info.run_id, "epoch_time_s") == list(range(6))


def _training(fold: int) -> list[int]:
    """The processes of this test dataset's nnUNetv2_train for `fold`."""
    return [pid for pid in _pids() if f"nnUNetv2_train {DATASET} 2d {fold} " in _cmdline(pid)]


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
