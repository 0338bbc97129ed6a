"""`dispatch sweep` on the real mini set at 64 px, through two CPU-backed gpu-queue workers: a grid covered
once with trials side by side, pruned trials that free their worker, the test split scored for the best
trial only, the study in the job table's database (SQLite and PostgreSQL), a killed worker's trial counted
once, cancel, and the retry of a failed trial."""

from __future__ import annotations

import json
import os
import signal
from datetime import datetime
from itertools import product
from pathlib import Path

import pytest
from conftest import STALL_S, Stack, wait_for
from test_nnunet_training import descendants, interval, show
from tracking_reads import mlflow_run_of, nested_runs, steps, wait_for_mlflow

DATASET = 410
GRID = "batch_size: [16, 32, 64]\nepochs: [3, 1]\n"  # 2x3; the three-epoch trials meet the pruner


def run_json(system: Stack, *args: str) -> dict:
    result = system.dispatch(*args, "--json")
    assert result.stdout, result.stderr
    return json.loads(result.stdout)


def study(system: Stack, run_id: int):  # noqa: ANN201 - an optuna.Study
    import optuna

    from shared.studies import study_name

    return optuna.load_study(study_name=study_name(run_id), storage=system.env["DATABASE_URL"])


@pytest.fixture(scope="module")
def mini_at_64(stack: Stack, mini: Path) -> Stack:
    """The mini set's classification cache at 64 px (160 radiographs), once per stack."""
    if not (stack.data_root / "classification" / f"Dataset{DATASET}_FracAtlas").exists():
        ingested = stack.dispatch(
            "ingest", "--source", str(mini), "--dataset-id", str(DATASET), "--size", "64", "--wait"
        )
        assert ingested.returncode == 0, ingested.stdout + ingested.stderr
    return stack


def space(tmp_path: Path, text: str) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return str(path)


def test_a_grid_sweep_runs_side_by_side_prunes_and_scores_only_its_best_trial(
    mini_at_64: Stack, system: Stack, tmp_path: Path
) -> None:
    run = run_json(
        system,
        "sweep", "--dataset-id", str(DATASET), "--space", space(tmp_path, GRID), "--sampler", "grid",
        "--pruner", "none", "--prune-below", "1.0", "--warmup-epochs", "2", "--wait",
    )  # fmt: skip
    assert run["state"] == "succeeded", run["error"]
    trials = [job for job in run["jobs"] if job["kind"] == "trial"]
    assert len(trials) == 6 and run["params"]["trials"] == 6

    # The grid, each point exactly once.
    points = [(job["metrics"]["params"]["batch_size"], job["metrics"]["params"]["epochs"]) for job in trials]
    assert sorted(points) == sorted(product((16, 32, 64), (3, 1)))
    assert sorted(job["metrics"]["trial"] for job in trials) == list(range(6))

    # Trials on both workers at once.
    overlapping = [
        (a, b)
        for a in trials
        for b in trials
        if a["id"] < b["id"] and a["worker"] != b["worker"] and interval(a)[0] < interval(b)[1]
        and interval(b)[0] < interval(a)[1]
    ]  # fmt: skip
    assert overlapping, "no two trials ran at the same time on the two workers"

    # Three-epoch trials were pruned after the warm-up, keeping their curve; one-epoch trials completed.
    pruned = [job for job in trials if job["state"] == "pruned"]
    assert sorted(job["metrics"]["params"]["epochs"] for job in pruned) == [3, 3, 3]
    for job in pruned:
        assert job["metrics"]["epochs_run"] == 2 and [e["epoch"] for e in job["metrics"]["history"]] == [1, 2]
        assert "pruned after epoch 2" in job["progress"]["message"]
    first = min(pruned, key=lambda job: interval(job)[1])
    assert any(
        job["worker"] == first["worker"] and interval(job)[0] >= interval(first)[1]
        for job in run["jobs"]
        if job["id"] != first["id"]
    ), "the worker of the first pruned trial took no further job"
    assert all(job["state"] == "succeeded" for job in trials if job not in pruned)

    # Chosen on validation; the test split scored for the best trial only.
    assert not any("test" in job["metrics"] for job in trials)
    best = run["metrics"]["best"]
    completed = [job for job in trials if job["state"] == "succeeded"]
    assert best["val_auc"] == max(job["metrics"]["best_val_auc"] for job in completed)
    assert best["params"]["epochs"] == 1 and 0 <= best["test"]["roc_auc"] <= 1
    assert run["metrics"]["trials"] == {"complete": 3, "pruned": 3}
    assert run["artifacts"]["checkpoint image"].endswith(".pt")

    # The study in the job table's database, as Optuna reads it.
    stored = study(system, run["id"])
    states = sorted(trial.state.name for trial in stored.trials)
    assert states == ["COMPLETE"] * 3 + ["PRUNED"] * 3
    assert stored.best_value == best["val_auc"]
    for trial in stored.trials:
        assert sorted(trial.intermediate_values) == ([1] if trial.params["epochs"] == 1 else [1, 2])

    shown = system.dispatch("show", run["ref"]).stdout
    assert "VAL AUC" in shown and "pruned" in shown and f"best: trial {best['trial']}" in shown
    assert "TEST SPLIT" in shown
    rows = [line.split() for line in shown.splitlines()]
    trial_rows = [row for row in rows if len(row) > 3 and row[0].isdigit() and row[1].startswith("j")]
    assert len(trial_rows) == 6
    aucs = [float(row[3]) for row in trial_rows if row[2] == "succeeded"]
    assert aucs == sorted(aucs, reverse=True), "trials are listed best first"

    assert "pruned" in system.dispatch("jobs", "--run", run["ref"]).stdout
    if system.env.get("MLFLOW_TRACKING_URI") != "none":  # each trial a nested run of the sweep's
        # Each job's worker sends in the background: wait as long as the workers go on sending.
        expected = {f"trial {n}" for n in range(1, 7)} | {"best trial on the test split"}

        def logged() -> dict | None:
            found = nested_runs(system, mlflow_run_of(system, run))
            ended = expected <= set(found) and found[first["name"]].info.status != "RUNNING"
            return found if ended else None

        nested = wait_for_mlflow(system, logged, "a nested MLflow run per trial")
        assert set(nested) == expected
        tracked = nested[first["name"]]
        assert tracked.info.status == "KILLED" and tracked.data.params["trial.epochs"] == "3"
        assert steps(system, tracked.info.run_id, "val_auc") == [1, 2]

    # The best trial's checkpoint serves predictions like any classifier run's.
    from shared.read_model import classifier_for_prediction

    assert classifier_for_prediction(run["id"]).checkpoint == run["artifacts"]["checkpoint image"]


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_a_trial_whose_worker_is_killed_is_carried_on_and_counted_once(mini_at_64: Stack, system: Stack) -> None:
    pids = {row["worker"]: row["pid"] for row in json.loads(system.dispatch("workers", "--json").stdout)}
    run = run_json(
        system, "sweep", "--dataset-id", str(DATASET), "--trials", "1", "--epochs", "8", "--pruner", "none",
        "--sampler", "random",
    )  # fmt: skip
    (trial,) = (job["ref"] for job in run["jobs"] if job["kind"] == "trial")
    job = wait_for(
        lambda: (j := show(system, trial))["progress"]["step"] >= 1 and j,
        STALL_S,
        "an epoch of the trial",
        progress=system.work,
    )
    for pid in [pids[job["worker"]], *descendants(pids[job["worker"]])]:
        os.kill(pid, signal.SIGKILL)
    finished = wait_for(
        lambda: (r := show(system, run["ref"]))["state"] in ("succeeded", "failed") and r, 400, "the sweep to end"
    )
    assert finished["state"] == "succeeded", finished["error"]
    trial_job = next(j for j in finished["jobs"] if j["kind"] == "trial")
    assert trial_job["attempt"] == 2
    (only,) = study(system, run["id"]).trials
    assert only.state.name == "COMPLETE" and sorted(only.intermediate_values) == list(range(1, 9))
    assert only.params == trial_job["metrics"]["params"] and trial_job["metrics"]["epochs_run"] == 8
    assert finished["metrics"]["trials"]["complete"] == 1


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_cancel_stops_the_running_trials_and_starts_no_more(mini_at_64: Stack, system: Stack) -> None:
    run = run_json(system, "sweep", "--dataset-id", str(DATASET), "--trials", "5", "--epochs", "30", "--pruner", "none")
    wait_for(
        lambda: sum(j["state"] == "running" for j in show(system, run["ref"])["jobs"]) == 2, 120, "two running trials"
    )
    assert system.dispatch("cancel", run["ref"]).returncode == 0
    ended = wait_for(
        lambda: (
            (r := show(system, run["ref"]))["state"] == "cancelled"
            and not any(j["state"] in ("queued", "running") for j in r["jobs"])
            and r
        ),
        60,
        "the sweep to be cancelled",
    )
    assert {job["state"] for job in ended["jobs"]} == {"cancelled"}
    wait_for(lambda: all(t.state.name == "FAIL" for t in study(system, run["id"]).trials), 60, "the trials to be told")
    assert len(study(system, run["id"]).trials) == 2, "no trial started after the cancel"


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_sweep_finish_lets_the_running_trials_end_and_scores_the_best(mini_at_64: Stack, system: Stack) -> None:
    run = run_json(system, "sweep", "--dataset-id", str(DATASET), "--trials", "5", "--epochs", "3", "--pruner", "none")
    wait_for(
        lambda: sum(j["state"] == "running" for j in show(system, run["ref"])["jobs"]) == 2, 120, "two running trials"
    )
    finishing = system.dispatch("sweep-finish", run["ref"])
    assert finishing.returncode == 0 and "3 queued trial(s) cancelled; 2 running finish" in finishing.stdout
    ended = wait_for(
        lambda: (r := show(system, run["ref"]))["state"] in ("succeeded", "failed") and r, 120, "the sweep's end"
    )
    assert ended["state"] == "succeeded", ended["error"]
    states = sorted(job["state"] for job in ended["jobs"] if job["kind"] == "trial")
    assert states == ["cancelled"] * 3 + ["succeeded"] * 2
    assert ended["metrics"]["trials"] == {"complete": 2} and 0 <= ended["metrics"]["best"]["test"]["roc_auc"] <= 1
    refused = system.dispatch("sweep-finish", "r1")
    assert refused.returncode == 2 and "is not a sweep" in refused.stderr


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_a_failed_trial_leaves_the_sweep_going_and_retry_runs_it_again(
    mini_at_64: Stack, system: Stack, tmp_path: Path
) -> None:
    weights = tmp_path / "weights.pt"
    weights.write_text("not a state dict")
    grid = f"weights: [none, {weights}]\nepochs: 1\n"
    run = run_json(
        system, "sweep", "--dataset-id", str(DATASET), "--space", space(tmp_path, grid), "--sampler", "grid", "--wait",
    )  # fmt: skip
    assert run["state"] == "succeeded", [job["error"] for job in run["jobs"]]
    failed = next(job for job in run["jobs"] if job["state"] == "failed")
    assert str(weights) in failed["error"] and "is not a torch state dict" in failed["error"]
    assert run["metrics"]["trials"] == {"complete": 1, "fail": 1}

    import torch

    torch.save(torch.load(run["artifacts"]["checkpoint image"])["state_dict"], weights)
    assert system.dispatch("retry", failed["ref"]).returncode == 0
    again = wait_for(
        lambda: (r := show(system, run["ref"]))["state"] in ("succeeded", "failed") and r["finished_at"] and r,
        STALL_S,
        "the retried trial and the sweep's end",
        progress=system.work,
    )
    assert again["state"] == "succeeded", again["error"]
    retried = next(job for job in again["jobs"] if job["id"] == failed["id"])
    assert retried["state"] == "succeeded" and retried["attempt"] == 2
    assert again["metrics"]["trials"] == {"complete": 2, "fail": 1}, "the failed try stays in the study"
    end = next(job for job in again["jobs"] if job["kind"] == "sweep-end")
    assert datetime.fromisoformat(end["finished_at"]) > datetime.fromisoformat(retried["finished_at"])


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("learning_rate: {low: 0.01, high: 0.001}\n", "learning_rate: low (0.01) must be below high"),
        ("batch_siz: [8]\n", "batch_siz: not a setting a sweep can vary"),
        ("learning_rate: [0.1\n", "at line 2"),
    ],
)
def test_a_bad_space_file_is_one_line_naming_the_key(
    mini_at_64: Stack, system: Stack, tmp_path: Path, text: str, names: str
) -> None:
    path = space(tmp_path, text)
    result = system.dispatch("sweep", "--dataset-id", str(DATASET), "--space", path)
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert names in line and path in line and "--space" in line
    assert "Traceback" not in result.stderr
