"""nnU-Net as Celery tasks: plan and preprocess (cpu queue), the folds side by side and their evaluation
(gpu queue). nnU-Net itself runs as its own command-line tools in child processes (commands.py)."""

from __future__ import annotations

import os
from typing import Any

from shared.contract import Experiment, PreprocessRequest, TrainRequest
from shared.defaults import JOBS_TRAINER
from shared.read_model import trained_folds
from shared.settings import get_settings
from shared.tasknames import NNUNET_EVALUATE, NNUNET_PREPROCESS, NNUNET_TRAIN_FOLD
from workers.nnunet.evaluate import evaluate_run
from workers.nnunet.folds import FoldRequest, train_fold
from workers.nnunet.preprocess import preprocess
from workers.nnunet.publish import publish_evaluation
from workers.runtime import JobContext, Outcome, job_task


@job_task(NNUNET_PREPROCESS)
def nnunet_preprocess(ctx: JobContext) -> Outcome:
    """nnU-Net's plan, integrity check and preprocessing, then the seeded 5-fold split."""
    settings = get_settings()
    request = PreprocessRequest.parse(ctx.run_params)
    ctx.progress(0, None, "nnUNetv2_plan_and_preprocess", force=True)
    metrics, artifacts = preprocess(
        settings,
        request,
        settings.cpu_concurrency or os.cpu_count() or 1,
        ctx.tool_run("preprocess"),
    )
    return Outcome(
        metrics=metrics, artifacts=artifacts, run_artifacts={"plans": artifacts["plans"], "splits": artifacts["splits"]}
    )


@job_task(NNUNET_TRAIN_FOLD)
def nnunet_train_fold(ctx: JobContext) -> Outcome:
    """Train (or resume, or only validate) one fold with nnUNetv2_train in a child process."""
    request = FoldRequest.of(TrainRequest.parse(ctx.run_params), int(ctx.params["fold"]))
    ctx.progress(0, request.epochs, "starting nnUNetv2_train", force=True)

    # The project's trainer prints every epoch's figures from nnU-Net's own logger; with another trainer
    # the figures read from its log are sent instead.
    own_trainer = request.experiment.trainer == JOBS_TRAINER and ctx.tracking.enabled

    def on_epoch(done: int, total: int | None, message: str, values: dict[str, Any]) -> None:
        ctx.progress(done, total, message, force=True)
        if not own_trainer:
            ctx.tracking.metrics({key: value for key, value in values.items() if key != "epoch"}, step=done - 1)

    metrics, artifacts = train_fold(
        get_settings(),
        request,
        ctx.log_path(f"fold{request.fold}"),
        on_epoch,
        ctx.should_stop,
        (lambda step, at, values: ctx.tracking.metrics(values, step=step, at_ms=at)) if own_trainer else None,
    )
    if "progress" in artifacts:
        ctx.tracking.artifact(artifacts["progress"])
        ctx.tracking.artifact(artifacts["progress"], f"fold_{request.fold}", on_run=True)
    return Outcome(metrics=metrics, artifacts=artifacts)


@job_task(NNUNET_EVALUATE)
def nnunet_evaluate(ctx: JobContext) -> Outcome:
    """Per-fold Dice, ensemble prediction of imagesTs and nnU-Net's evaluation against labelsTs."""
    folds = trained_folds(ctx.run_id)
    ctx.progress(0, None, f"predicting the test set with folds {folds}", force=True)
    settings, experiment = get_settings(), Experiment.parse(ctx.run_params)
    metrics, artifacts = evaluate_run(settings, experiment, folds, ctx.folder, ctx.tool_run("evaluate"))
    publish_evaluation(ctx.tracking, settings, experiment, ctx.run_id, metrics, artifacts, ctx.folder)
    return Outcome(metrics=metrics, artifacts=artifacts, run_metrics=metrics, run_artifacts=artifacts)
