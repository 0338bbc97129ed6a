"""The classifier as Celery tasks on the gpu queue: nnU-Net's segmentation channel and the classifier's
training (prediction is workers/predict/tasks.py's).

Every worker imports this module (the app includes it): torch is imported inside the tasks, so that cpu
workers never load it.
"""

from __future__ import annotations

from shared.contract import ChannelRequest, ClassifyRequest
from shared.defaults import IMAGE_SEG
from shared.layout import segmentation_channel_file
from shared.read_model import trained_segmentation
from shared.settings import get_settings
from shared.tasknames import CLASSIFY_CHANNEL, CLASSIFY_TRAIN
from workers.classifier.publish import publish_classifier
from workers.runtime import JobContext, Outcome, job_task


@job_task(CLASSIFY_CHANNEL)
def classify_segmentation_channel(ctx: JobContext) -> Outcome:
    """nnU-Net's fracture probability for every cached image: out-of-fold or ensemble (built once per run)."""
    from workers.classifier.data import load_set
    from workers.classifier.segmentation_channel import build_channel

    settings = get_settings()
    request = ChannelRequest.parse({**ctx.run_params, **ctx.params})
    seg_run = request.seg_run or ctx.run_id  # none named: a pipeline's own folds
    classification = load_set(settings.layout.classification_cache(request.dataset_id))
    existing = segmentation_channel_file(classification.folder, seg_run)
    if existing.exists():
        return Outcome(metrics={"reused": True}, artifacts={"segmentation_channel": str(existing)})
    experiment, folds = trained_segmentation(seg_run)
    ctx.progress(0, None, f"nnU-Net folds {folds} of r{seg_run} on {len(classification.labels)} images", force=True)
    path, counts = build_channel(
        settings,
        experiment,
        seg_run,
        folds,
        classification,
        ctx.folder / "segmentation_channel",
        ctx.tool_run("segmentation-channel"),
    )
    return Outcome(metrics=counts, artifacts={"segmentation_channel": str(path)})


@job_task(CLASSIFY_TRAIN)
def classify_train(ctx: JobContext) -> Outcome:
    """Train and test the classifier (its backbone, ResNet18 by default) for one input mode."""
    from workers.classifier.fit import fit_classifier
    from workers.classifier.train import EpochReport

    request = ClassifyRequest.for_job(ctx.run_params, ctx.params)
    if request.input == IMAGE_SEG and request.seg_run is None:
        request = request.model_copy(update={"seg_run": ctx.run_id})  # a pipeline's own folds

    def on_epoch(report: EpochReport) -> None:
        auc = "-" if report.val_auc is None else f"{report.val_auc:.3f}"
        ctx.progress(
            report.epoch,
            report.epochs,
            f"epoch {report.epoch}/{report.epochs}, train_loss {report.train_loss:.4f}, val AUC {auc}, "
            f"{report.images_per_s:.0f} images/s",
            force=True,
        )
        figures = {"train_loss": report.train_loss, "val_auc": report.val_auc, "images_per_s": report.images_per_s}
        ctx.tracking.metrics(figures, step=report.epoch)

    ctx.progress(0, request.epochs, f"{request.backbone} on {request.input}", force=True)
    metrics, artifacts = fit_classifier(get_settings(), request, ctx.folder, on_epoch, ctx.check)
    publish_classifier(ctx.tracking, ctx.run_id, request.dataset_id, request.input, metrics, artifacts)
    kept = ("test", "best_epoch", "best_val_auc", "train_images_per_s", "split", "backbone", "weights")
    summary = {key: metrics[key] for key in kept}
    return Outcome(
        metrics=metrics,
        artifacts=artifacts,
        run_metrics={f"classifier {request.input}": summary},
        run_artifacts={f"{key} {request.input}": value for key, value in artifacts.items()},
    )
