"""The end of a sweep: the best trial (by validation AUC) scored once on the test split, the study's
parameter importances, and the best checkpoint offered to `dispatch predict` like any classifier run's."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.importance import FanovaImportanceEvaluator
from optuna.trial import TrialState

from shared.contract import SweepRequest
from shared.db.models import OPEN
from shared.errors import InputError
from shared.read_model import get_run
from shared.settings import get_settings
from workers.classifier.fit import prepare, score_test
from workers.classifier.model import load_classifier
from workers.sweep.study import JOB_ATTR, durable, open_study, unowned_running
from workers.sweep.trial import OUTCOME_ATTR

log = logging.getLogger(__name__)
MIN_TRIALS_FOR_IMPORTANCE = 5


def importances(study: optuna.Study, complete: int) -> dict[str, float]:
    """fANOVA's share of the validation AUC's variance per parameter (direction-free, seeded); none with
    fewer than MIN_TRIALS_FOR_IMPORTANCE complete trials, where it would only describe noise."""
    if complete < MIN_TRIALS_FOR_IMPORTANCE:
        return {}
    try:
        found = optuna.importance.get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))
    except (RuntimeError, ValueError) as error:  # nothing varied, say
        log.info("no parameter importances: %s", error)
        return {}
    return {key: round(float(value), 4) for key, value in found.items()}


@dataclass(frozen=True)
class SweepEnd:
    metrics: dict[str, Any]  # the best trial, the trials' ends, the importances
    artifacts: dict[str, str]  # the best checkpoint and its test pictures
    input: str  # the best trial's classifier input
    classifier: dict[str, Any]  # the best trial as a classify run's summary


def finish_sweep(
    request: SweepRequest, run_id: int, job_id: int, folder: Path, progress: Callable[..., None]
) -> SweepEnd:
    """End the sweep `run_id` from its job `job_id`: the trials no job carries on are failed, the best is
    scored on the test split."""
    study = open_study(run_id, request)
    run = get_run(run_id)
    open_jobs = {job["id"] for job in run["jobs"] if job["state"] in OPEN and job["id"] != job_id}
    for orphan in unowned_running(study, open_jobs):
        durable(study.tell, orphan.number, state=TrialState.FAIL)
    trials = durable(study.get_trials, deepcopy=False)
    counts = {state.name.lower(): n for state in TrialState if (n := sum(t.state == state for t in trials))}
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    if not complete:
        raise InputError(
            f"no trial of r{run_id} completed ({counts.get('pruned', 0)} pruned, {counts.get('fail', 0)} "
            f"failed); see `dispatch show r{run_id}`, then widen the space, relax --prune-below or retry a trial"
        )
    best = max(complete, key=lambda trial: (trial.value, -trial.number))
    outcome: dict[str, Any] = best.user_attrs[OUTCOME_ATTR]
    classify = request.trial_request(best.params)
    progress(0, None, f"trial {best.number} (val AUC {best.value:.3f}) on the test split", force=True)
    classifier = load_classifier(Path(outcome["checkpoint"]))
    data = prepare(get_settings(), classify)
    model = classifier.model.to(data.images.device)
    test, pictures = score_test(data, model, classifier.threshold, classify, folder / "best")
    headline = {
        "trial": best.number,
        "job": f"j{best.user_attrs[JOB_ATTR]}",
        "params": best.params,
        "val_auc": best.value,
        "best_epoch": outcome["best_epoch"],
        "test": test,
    }
    metrics = {"best": headline, "trials": counts, "importances": importances(study, len(complete))}
    # As a classify run's: `dispatch predict --classifier r<sweep>` and the registry find the best one.
    classifier_summary = {
        "test": test,
        "best_epoch": outcome["best_epoch"],
        "best_val_auc": best.value,
        "train_images_per_s": outcome["train_images_per_s"],
        "split": outcome["split"],
    }
    artifacts = {"checkpoint": outcome["checkpoint"], **pictures}
    return SweepEnd(metrics, artifacts, classify.input, classifier_summary)
