"""A sweep's study as each of its jobs opens it: stored in the job table's database, with the sampler and
pruner its request names, and the Optuna trial that belongs to a job.

A job tags its trial with its own id (user attribute `job`): a later attempt of the job (its worker was
lost, or it was handed back) carries on the same trial, so the study counts it once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import optuna
from optuna.pruners import BasePruner
from optuna.trial import FrozenTrial, TrialState

from shared.contract import SweepRequest
from shared.db import transient
from shared.db.engine import retry_window_s
from shared.settings import get_settings
from shared.studies import open_storage, study_name

JOB_ATTR = "job"
optuna.logging.set_verbosity(optuna.logging.WARNING)
T = TypeVar("T")


def durable(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A call on the study that waits out a database outage, as the job table's writes do."""
    return transient.call(retry_window_s(), function, *args, **kwargs)


class AnyPruner(BasePruner):
    """Prunes where any of its pruners would: the median rule and a floor on the AUC together."""

    def __init__(self, pruners: list[BasePruner]) -> None:
        self.pruners = pruners

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        return any(pruner.prune(study, trial) for pruner in self.pruners)


class JobGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler for trials that jobs ask and tell: a sweep has as many trial jobs as its grid
    has points, so the study is never stopped (GridSampler stops it once the grid is covered, which raises
    outside `study.optimize`)."""

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        return None


def sampler_for(request: SweepRequest, trial_index: int) -> optuna.samplers.BaseSampler:
    """The grid's order is the sweep's seed's, the same in every job (each trial number is one grid point);
    the other samplers get a seed per trial job (the sweep's and the job's index), so parallel trials differ."""
    if request.sampler == "grid":
        return JobGridSampler(_grid_axes(request), seed=request.seed)
    seed = request.seed * 100_003 + trial_index
    if request.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar: trials that run count as bad ones, so that k trials starting together spread out.
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def _grid_axes(request: SweepRequest) -> dict[str, list[Any]]:
    points = request.grid
    return {key: list(dict.fromkeys(point[key] for point in points)) for key in points[0]}


def pruner_for(request: SweepRequest) -> BasePruner:
    warmup = request.warmup_epochs
    pruners: list[BasePruner] = []
    if request.pruner == "median":
        # The median of a few finished trials: up to Optuna's 5, fewer in a small sweep.
        startup = max(1, min(5, request.trials // 4))
        pruners.append(optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup))
    elif request.pruner == "halving":
        pruners.append(optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, warmup)))
    if request.prune_below is not None:
        pruners.append(optuna.pruners.ThresholdPruner(lower=request.prune_below, n_warmup_steps=warmup))
    return AnyPruner(pruners) if pruners else optuna.pruners.NopPruner()


def open_study(run_id: int, request: SweepRequest, trial_index: int = 0) -> optuna.Study:
    """The sweep's study; the first job to open it creates it (a second at the same moment loads it)."""
    return durable(
        optuna.create_study,
        storage=open_storage(get_settings().db_url),
        study_name=study_name(run_id),
        sampler=sampler_for(request, trial_index),
        pruner=pruner_for(request),
        direction="maximize",
        load_if_exists=True,
    )


def trial_of_job(study: optuna.Study, job_id: int) -> FrozenTrial | None:
    """The newest trial this job made, in any state."""
    trials = durable(study.get_trials, deepcopy=False)
    own = [trial for trial in trials if trial.user_attrs.get(JOB_ATTR) == job_id]
    return max(own, key=lambda trial: trial.number) if own else None


def new_trial(study: optuna.Study, job_id: int) -> optuna.Trial:
    trial = durable(study.ask)
    durable(trial.set_user_attr, JOB_ATTR, job_id)
    return trial


def retry_trial(study: optuna.Study, earlier: FrozenTrial, job_id: int) -> optuna.Trial:
    """`dispatch retry` of a failed trial: a new trial of the same job with the failed one's settings (the
    failed one stays in the study as it ended). An earlier attempt may have queued it already."""
    if earlier.state != TrialState.WAITING:
        durable(study.enqueue_trial, earlier.params, user_attrs={JOB_ATTR: job_id}, skip_if_exists=False)
    waiting = [
        trial
        for trial in durable(study.get_trials, deepcopy=False, states=(TrialState.WAITING,))
        if trial.user_attrs.get(JOB_ATTR) == job_id
    ]
    trial_id = max(waiting, key=lambda trial: trial.number)._trial_id
    durable(study._storage.set_trial_state_values, trial_id, TrialState.RUNNING)
    return optuna.Trial(study, trial_id)


def resume(study: optuna.Study, frozen: FrozenTrial) -> optuna.Trial:
    """The running trial of an earlier attempt, to report into again (its parameters are kept)."""
    return optuna.Trial(study, frozen._trial_id)


def unowned_running(study: optuna.Study, open_jobs: set[int]) -> list[FrozenTrial]:
    """Running trials that no open job carries on: a job lost between asking and tagging its trial, or
    one that ended without telling the study."""
    return [
        trial
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if trial.user_attrs.get(JOB_ATTR) not in open_jobs
    ]
