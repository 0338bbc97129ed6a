"""Super-resolution as a Celery task on the gpu queue: one job per scale (`dispatch sr-train`).

torch is imported inside the task, so that cpu workers never load it.
"""

from __future__ import annotations

from shared.contract import SuperResRequest
from shared.tasknames import SUPERRES_TRAIN
from workers.runtime import JobContext, Outcome, job_task
from workers.superres.publish import publish_superres


@job_task(SUPERRES_TRAIN)
def superres_train(ctx: JobContext) -> Outcome:
    """One scale's super-resolution network: trained (or resumed), scored against bicubic, registered."""
    from workers.superres.scale import train_scale

    request, scale = SuperResRequest.parse(ctx.run_params), int(ctx.params["scale"])
    trained = train_scale(request, scale, ctx.run_id, ctx.folder, ctx.progress, ctx.tracking, ctx.check)
    publish_superres(ctx.tracking, ctx.run_id, request.dataset_id, scale, trained.metrics, trained.artifacts)
    model, samples = trained.artifacts["model"], trained.artifacts["samples_png"]
    return Outcome(
        metrics=trained.metrics,
        artifacts=trained.artifacts,
        run_metrics={f"superres x{scale}": trained.scores},
        run_artifacts={f"model x{scale}": model, f"samples x{scale}": samples},
    )
