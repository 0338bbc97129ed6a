"""GPU work as Celery tasks on the gpu queue: nnU-Net folds and their evaluation, the classifier's
segmentation channel, its training, its sweeps' trials and their end, prediction for new radiographs, and
the super-resolution networks.

Every worker imports this module (the app includes it); the classifier's torch imports stay inside its
tasks so that cpu workers never load torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.contract import ChannelRequest, ClassifyRequest, Experiment, PredictRequest, TrainRequest
from shared.defaults import IMAGE_SEG, JOBS_TRAINER
from shared.layout import segmentation_channel_file
from shared.read_model import get_run, trained_folds
from shared.settings import get_settings
from shared.tasknames import (
    CLASSIFY_CHANNEL,
    CLASSIFY_PREDICT,
    CLASSIFY_TRAIN,
    NNUNET_EVALUATE,
    NNUNET_TRAIN_FOLD,
    SUPERRES_TRAIN,
    SWEEP_FINISH,
    SWEEP_TRIAL,
)
from workers.gpu.evaluate import evaluate_run
from workers.gpu.folds import FoldRequest, train_fold
from workers.runtime import JobContext, Outcome, job_task
from workers.tracking.publish import publish_classifier, publish_evaluation


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
    metrics, artifacts = evaluate_run(
        settings,
        experiment,
        folds,
        ctx.folder,
        ctx.log_path("evaluate"),
        lambda line: ctx.progress(0, None, line[-200:]),
        ctx.should_stop,
    )
    publish_evaluation(ctx.tracking, settings, experiment, ctx.run_id, metrics, artifacts, ctx.folder)
    return Outcome(metrics=metrics, artifacts=artifacts, run_metrics=metrics, run_artifacts=artifacts)


def _segmentation_of(run_id: int) -> tuple[Experiment, list[int]]:
    """The nnU-Net experiment of a training run and its folds that finished."""
    return Experiment.parse(get_run(run_id)["params"]), trained_folds(run_id)


@job_task(CLASSIFY_CHANNEL)
def classify_segmentation_channel(ctx: JobContext) -> Outcome:
    """nnU-Net's fracture probability for every cached image: out-of-fold or ensemble (built once per run)."""
    from workers.gpu.classifier.data import load_set
    from workers.gpu.classifier.segmentation_channel import build_channel

    settings = get_settings()
    request = ChannelRequest.parse({**ctx.run_params, **ctx.params})
    seg_run = request.seg_run or ctx.run_id  # none named: a pipeline's own folds
    classification = load_set(settings.layout.classification_cache(request.dataset_id))
    existing = segmentation_channel_file(classification.folder, seg_run)
    if existing.exists():
        return Outcome(metrics={"reused": True}, artifacts={"segmentation_channel": str(existing)})
    experiment, folds = _segmentation_of(seg_run)
    ctx.progress(0, None, f"nnU-Net folds {folds} of r{seg_run} on {len(classification.labels)} images", force=True)
    path, counts = build_channel(
        settings,
        experiment,
        seg_run,
        folds,
        classification,
        ctx.folder / "segmentation_channel",
        ctx.log_path("segmentation-channel"),
        lambda line: ctx.progress(0, None, line[-200:]),
        ctx.should_stop,
    )
    return Outcome(metrics=counts, artifacts={"segmentation_channel": str(path)})


@job_task(CLASSIFY_TRAIN)
def classify_train(ctx: JobContext) -> Outcome:
    """Train and test the ResNet18 classifier for one input mode."""
    from workers.gpu.classifier.fit import fit_classifier
    from workers.gpu.classifier.train import EpochReport

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

    ctx.progress(0, request.epochs, f"ResNet18 on {request.input}", force=True)
    metrics, artifacts = fit_classifier(get_settings(), request, ctx.folder, on_epoch, ctx.check)
    publish_classifier(ctx.tracking, ctx.run_id, request.dataset_id, request.input, metrics, artifacts)
    summary = {key: metrics[key] for key in ("test", "best_epoch", "best_val_auc", "train_images_per_s", "split")}
    return Outcome(
        metrics=metrics,
        artifacts=artifacts,
        run_metrics={f"classifier {request.input}": summary},
        run_artifacts={f"{key} {request.input}": value for key, value in artifacts.items()},
    )


@job_task(SWEEP_TRIAL)
def sweep_trial(ctx: JobContext) -> Outcome:
    """One trial of a sweep: settings from its Optuna study, the classifier trained and reported per epoch."""
    from workers.gpu.sweep.trial import run_trial

    return run_trial(ctx)


@job_task(SWEEP_FINISH)
def sweep_finish(ctx: JobContext) -> Outcome:
    """A sweep's end: its best trial on the test split, and the parameters' importances."""
    from workers.gpu.sweep.finish import finish_sweep

    return finish_sweep(ctx)


@job_task(CLASSIFY_PREDICT)
def classify_predict(ctx: JobContext) -> Outcome:
    """Masks, overlays and fracture probabilities for new radiographs."""
    from workers.gpu.classifier.predict import load_classifier, predict_files

    request = PredictRequest.parse(ctx.run_params)
    classifier = load_classifier(Path(request.checkpoint))
    experiment, folds = _segmentation_of(request.seg_run)
    out = Path(request.out) if request.out else ctx.folder / "predictions"
    ctx.progress(0, None, f"{len(request.files)} file(s): nnU-Net folds {folds} and the classifier", force=True)
    metrics, artifacts = predict_files(
        get_settings(),
        [Path(name) for name in request.files],
        out,
        classifier,
        experiment,
        folds,
        ctx.log_path("predict"),
        lambda line: ctx.progress(0, None, line[-200:]),
        ctx.should_stop,
    )
    return Outcome(metrics=metrics, artifacts=artifacts, run_metrics=metrics, run_artifacts=artifacts)


@job_task(SUPERRES_TRAIN)
def superres_train(ctx: JobContext) -> Outcome:
    """One scale's super-resolution network: trained (or resumed), scored against bicubic, registered."""
    from workers.gpu.superres.job import train_scale

    return train_scale(ctx)
