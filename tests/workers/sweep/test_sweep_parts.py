"""The parts of a sweep that need no worker: its samplers, pruners and importances, on Optuna's in-memory
storage."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from shared.contract import SweepRequest
from workers.sweep.finish import importances
from workers.sweep.study import JOB_ATTR, pruner_for, sampler_for, unowned_running
from workers.sweep.trial import suggest

GRID = {"batch_size": [16, 32, 64], "learning_rate": [1e-3, 1e-2]}


def test_every_trial_job_walks_the_same_grid_so_trial_numbers_cover_it_once() -> None:
    request = SweepRequest.build(space=GRID, sampler="grid")
    study = optuna.create_study(direction="maximize")
    points = []
    for index in range(1, request.trials + 1):  # each job builds its own sampler, as workers do
        study.sampler = sampler_for(request, index)
        trial = study.ask()
        points.append(tuple(suggest(trial, request.space).values()))
        study.tell(trial, 0.5)  # the grid's end does not stop a study that jobs drive
    assert sorted(points) == sorted((b, lr) for b in GRID["batch_size"] for lr in GRID["learning_rate"])


def test_the_floor_prunes_after_the_warm_up_and_the_median_rule_beside_it() -> None:
    request = SweepRequest.build(space=GRID, pruner="median", prune_below=0.6, warmup_epochs=2)
    study = optuna.create_study(direction="maximize", pruner=pruner_for(request))
    trial = study.ask()
    trial.report(0.3, 1)
    assert not trial.should_prune(), "no trial is pruned before its warm-up"
    trial.report(0.55, 2)
    assert trial.should_prune(), "below the floor after the warm-up"
    none = SweepRequest.build(space=GRID, pruner="none")
    assert isinstance(pruner_for(none), optuna.pruners.NopPruner)


def test_importances_name_the_setting_that_moved_the_auc_once_enough_trials_completed() -> None:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    space = SweepRequest.build(
        space={"learning_rate": {"low": 1e-4, "high": 1e-1, "log": True}, "augment": {"low": 0, "high": 2}}
    ).space
    for _ in range(12):
        trial = study.ask()
        params = suggest(trial, space)
        study.tell(trial, 1.0 - abs(params["learning_rate"] - 1e-3))  # the rate decides, augment does not
    found = importances(study, 12)
    assert max(found, key=found.get) == "learning_rate"
    assert importances(study, 4) == {}, "too few complete trials say nothing"


def test_a_running_trial_no_open_job_carries_on_is_found() -> None:
    study = optuna.create_study(direction="maximize")
    carried, lost = study.ask(), study.ask()
    carried.set_user_attr(JOB_ATTR, 7)
    lost.set_user_attr(JOB_ATTR, 8)
    study.tell(study.ask(), 0.7)
    assert [trial.number for trial in unowned_running(study, open_jobs={7})] == [lost.number]
    running = unowned_running(study, open_jobs=set())
    assert sorted(trial.number for trial in running) == [carried.number, lost.number], "every running trial"
    assert all(trial.state == TrialState.RUNNING for trial in running)
