"""One trial of a sweep: ask the study for settings, train the classifier on them, report the validation AUC
after every epoch (the pruner may stop the trial there), and tell the study the best one.

The test split is not touched: the sweep's end scores the best trial only (finish.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from shared.contract import SweepRequest
from shared.errors import InputError
from shared.redact import redact_text
from shared.search_space import SEARCHABLE
from shared.settings import get_settings
from workers.classifier.fit import fit, prepare
from workers.classifier.train import EpochReport
from workers.stops import JobPruned, WorkerStopping
from workers.sweep.study import durable, new_trial, open_study, resume, retry_trial, trial_of_job
from workers.tracking.job import JobTracking

log = logging.getLogger(__name__)
OUTCOME_ATTR = "outcome"  # what the job records, kept with the trial before the study is told


class Pruned(Exception):
    def __init__(self, epoch: int) -> None:
        super().__init__(f"pruned after epoch {epoch}")


def suggest(trial: optuna.Trial, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The trial's settings: asked of the sampler once; asked again (a resumed trial), the same ones."""
    params = {}
    for key, spec in space.items():
        if "choices" in spec:
            params[key] = trial.suggest_categorical(key, spec["choices"])
        elif SEARCHABLE[key] is int:
            params[key] = trial.suggest_int(key, spec["low"], spec["high"], step=spec["step"] or 1, log=spec["log"])
        else:
            params[key] = trial.suggest_float(key, spec["low"], spec["high"], step=spec["step"], log=spec["log"])
    return params


def _tell_failed(study: optuna.Study, trial: optuna.Trial) -> None:
    try:
        study.tell(trial, state=TrialState.FAIL)
    except Exception as error:  # noqa: BLE001 - the sweep's end fails a running trial that no job carries on
        log.warning("trial %s: the study was not told it failed (%s)", trial.number, redact_text(str(error)))


def run_trial(
    request: SweepRequest,
    run_id: int,
    job_id: int,
    number: int,
    folder: Path,
    progress: Callable[..., None],
    tracking: JobTracking,
    check: Callable[[], None],
) -> tuple[dict[str, Any], dict[str, str]]:
    """Trial `number` of the sweep `run_id`, run by job `job_id`: its outcome (metrics) and its checkpoint.
    Raises JobPruned where the pruner stopped it."""
    study = open_study(run_id, request, number)
    earlier = trial_of_job(study, job_id)
    if earlier is not None and earlier.state == TrialState.COMPLETE:
        return earlier.user_attrs[OUTCOME_ATTR], {}  # told before its job could record it
    if earlier is not None and earlier.state == TrialState.PRUNED:
        raise JobPruned(f"trial {earlier.number} was pruned", earlier.user_attrs.get(OUTCOME_ATTR, {}))
    resumed = earlier is not None and earlier.state == TrialState.RUNNING
    if earlier is None:
        trial = new_trial(study, job_id)
    elif resumed:
        trial = resume(study, earlier)
    else:  # failed or cancelled before: retried with the same settings
        trial = retry_trial(study, earlier, job_id)
    params = suggest(trial, request.space)
    history: list[dict[str, Any]] = []

    def summary(**more: Any) -> dict[str, Any]:
        aucs = [entry["val_auc"] for entry in history if entry["val_auc"] is not None]
        return {
            "trial": trial.number,
            "params": params,
            "epochs_run": len(history),
            "best_val_auc": max(aucs, default=None),
            "history": history,
            **more,
        }

    def on_epoch(report: EpochReport) -> None:
        history.append({key: report.__dict__[key] for key in ("epoch", "train_loss", "val_auc", "seconds")})
        auc = "-" if report.val_auc is None else f"{report.val_auc:.3f}"
        progress(report.epoch, report.epochs, f"trial {trial.number}: epoch {report.epoch}, val AUC {auc}")
        tracking.metrics({"train_loss": report.train_loss, "val_auc": report.val_auc}, step=report.epoch)
        if report.val_auc is not None:
            # A trial started again keeps what its earlier attempt reported for an epoch (Optuna keeps the
            # first value of a step): each epoch counts once.
            durable(trial.report, report.val_auc, report.epoch)
            if durable(trial.should_prune):
                raise Pruned(report.epoch)

    tracking.params({f"trial.{key}": value for key, value in params.items()})
    progress(0, None, f"trial {trial.number}{' (resumed)' if resumed else ''}: {params}", force=True)
    classify = request.trial_request(params)
    try:
        fitted = fit(prepare(get_settings(), classify), classify, folder / f"trial_{trial.number}", on_epoch, check)
        value = fitted.metrics["best_val_auc"]
        if value is None:
            raise InputError("the validation split holds one class only, so it has no AUC; raise --val-fraction")
    except Pruned as pruned:
        outcome = summary()
        durable(trial.set_user_attr, OUTCOME_ATTR, outcome)
        durable(study.tell, trial, state=TrialState.PRUNED)
        raise JobPruned(f"trial {trial.number} {pruned}", outcome) from None
    except WorkerStopping:
        raise  # handed back: the next attempt carries on this trial
    except BaseException:
        _tell_failed(study, trial)  # cancelled, stopped or failed: the study goes on without it
        raise
    outcome = summary(
        best_val_auc=value,
        best_epoch=fitted.metrics["best_epoch"],
        threshold=fitted.threshold,
        checkpoint=str(fitted.checkpoint),
        validation=fitted.metrics["validation"],
        train_images_per_s=fitted.metrics["train_images_per_s"],
        split=fitted.metrics["split"],
    )
    durable(trial.set_user_attr, OUTCOME_ATTR, outcome)
    durable(study.tell, trial, value)
    return outcome, {"checkpoint": str(fitted.checkpoint)}
