"""GPU work as Celery tasks on the gpu queue: one nnU-Net fold per job, then the run's evaluation."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from shared.db.engine import session_scope
from shared.db.models import Job, State
from shared.settings import get_settings
from shared.tasknames import NNUNET_EVALUATE, NNUNET_TRAIN_FOLD
from workers.gpu.evaluate import evaluate_run
from workers.gpu.folds import FoldRequest, train_fold
from workers.nnunet import experiment_of
from workers.runtime import JobContext, Outcome, job_task


def _optional_int(params: dict[str, Any], name: str) -> int | None:
    return int(params[name]) if params.get(name) is not None else None


@job_task(NNUNET_TRAIN_FOLD)
def nnunet_train_fold(ctx: JobContext) -> Outcome:
    """Train (or resume, or only validate) one fold with nnUNetv2_train in a child process."""
    params = ctx.run_params
    request = FoldRequest(
        experiment=experiment_of(params),
        fold=int(ctx.params["fold"]),
        epochs=_optional_int(params, "epochs"),
        iterations=_optional_int(params, "iterations"),
        val_iterations=_optional_int(params, "val_iterations"),
        save_every=_optional_int(params, "save_every"),
    )
    ctx.progress(0, request.epochs, "starting nnUNetv2_train", force=True)

    def on_epoch(done: int, total: int | None, message: str, values: dict[str, Any]) -> None:
        ctx.progress(done, total, message, force=True)

    metrics, artifacts = train_fold(
        get_settings(), request, ctx.log_path(f"fold{request.fold}"), on_epoch, ctx.should_stop
    )
    return Outcome(metrics=metrics, artifacts=artifacts)


@job_task(NNUNET_EVALUATE)
def nnunet_evaluate(ctx: JobContext) -> Outcome:
    """Per-fold Dice, ensemble prediction of imagesTs and nnU-Net's evaluation against labelsTs."""
    with session_scope() as session:
        folds = sorted(
            int(job.params["fold"])
            for job in session.scalars(select(Job).where(Job.run_id == ctx.run_id, Job.kind == "fold"))
            if job.state == State.SUCCEEDED
        )
    ctx.progress(0, None, f"predicting the test set with folds {folds}", force=True)
    metrics, artifacts = evaluate_run(
        get_settings(),
        experiment_of(ctx.run_params),
        folds,
        ctx.folder,
        ctx.log_path("evaluate"),
        lambda line: ctx.progress(0, None, line[-200:]),
        ctx.should_stop,
    )
    return Outcome(metrics=metrics, artifacts=artifacts, run_metrics=metrics, run_artifacts=artifacts)
