"""A sweep as Celery tasks on the gpu queue: its trials side by side, then its end.

Optuna and torch are imported inside the tasks, so that cpu workers never load them.
"""

from __future__ import annotations

from shared.contract import SweepRequest
from shared.tasknames import SWEEP_FINISH, SWEEP_TRIAL
from workers.classifier.publish import publish_classifier
from workers.runtime import JobContext, Outcome, job_task


@job_task(SWEEP_TRIAL)
def sweep_trial(ctx: JobContext) -> Outcome:
    """One trial of a sweep: settings from its Optuna study, the classifier trained and reported per epoch."""
    from workers.sweep.trial import run_trial

    metrics, artifacts = run_trial(
        SweepRequest.parse(ctx.run_params),
        ctx.run_id,
        ctx.job_id,
        int(ctx.params["trial"]),
        ctx.folder,
        ctx.progress,
        ctx.tracking,
        ctx.check,
    )
    return Outcome(metrics=metrics, artifacts=artifacts)


@job_task(SWEEP_FINISH)
def sweep_finish(ctx: JobContext) -> Outcome:
    """A sweep's end: its best trial on the test split, and the parameters' importances."""
    from workers.sweep.finish import finish_sweep

    request = SweepRequest.parse(ctx.run_params)
    end = finish_sweep(request, ctx.run_id, ctx.job_id, ctx.folder, ctx.progress)
    figures = {"test": end.classifier["test"], "best_val_auc": end.classifier["best_val_auc"]}
    publish_classifier(ctx.tracking, ctx.run_id, request.dataset_id, end.input, figures, end.artifacts)
    return Outcome(
        metrics=end.metrics,
        artifacts=end.artifacts,
        run_metrics={**end.metrics, f"classifier {end.input}": end.classifier},
        run_artifacts={f"{key} {end.input}": value for key, value in end.artifacts.items()},
    )
