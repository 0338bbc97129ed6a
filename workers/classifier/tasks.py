"""The classifier as Celery tasks on the gpu queue: nnU-Net's segmentation channel, the classifier's training,
and prediction for new radiographs.

Every worker imports this module (the app includes it): torch is imported inside the tasks, so that cpu
workers never load it.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from pathlib import Path

from shared.contract import ChannelRequest, ClassifyRequest, Experiment, PacsSource, PredictRequest
from shared.defaults import IMAGE_SEG
from shared.layout import segmentation_channel_file
from shared.model_registry import classifier_model_name, nnunet_model_name
from shared.read_model import get_run, trained_folds
from shared.settings import get_settings
from shared.tasknames import CLASSIFY_CHANNEL, CLASSIFY_PREDICT, CLASSIFY_TRAIN
from workers.classifier.publish import publish_classifier
from workers.runtime import JobContext, Outcome, job_task


def _segmentation_of(run_id: int) -> tuple[Experiment, list[int]]:
    """The nnU-Net experiment of a training run and its folds that finished."""
    return Experiment.parse(get_run(run_id)["params"]), trained_folds(run_id)


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


@job_task(CLASSIFY_PREDICT)
def classify_predict(ctx: JobContext) -> Outcome:
    """Masks, overlays and fracture probabilities for new radiographs, given as files or as a PACS study."""
    from workers.classifier.dicom_seg import Algorithm
    from workers.classifier.predict import DicomOutput, load_classifier
    from workers.imaging.pseudonyms import private_key

    request = PredictRequest.parse(ctx.run_params)
    settings = get_settings()
    classifier = load_classifier(Path(request.checkpoint))
    experiment, folds = _segmentation_of(request.seg_run)
    out = Path(request.out) if request.out else ctx.folder / "predictions"
    dicom = DicomOutput(
        private_key(settings.layout.private_dir),
        Algorithm(nnunet_model_name(request.dataset_id), f"r{request.seg_run}"),
        Algorithm(classifier_model_name(request.dataset_id), f"r{request.classifier_run}"),
        request.probabilities,
    )

    def predict(files: list[Path]) -> tuple[dict, dict]:
        from workers.classifier.predict import predict_files

        ctx.progress(0, None, f"{len(files)} file(s): nnU-Net folds {folds} and the classifier", force=True)
        log, on_line = ctx.log_path("predict"), lambda line: ctx.progress(0, None, line[-200:])
        return predict_files(settings, files, out, classifier, experiment, folds, log, on_line, ctx.should_stop, dicom)

    if request.pacs is None:
        metrics, artifacts = predict([Path(name) for name in request.files])
    else:
        metrics, artifacts = _predict_study(ctx, request.pacs, dicom.key, out, predict)
    return Outcome(metrics=metrics, artifacts=artifacts, run_metrics=metrics, run_artifacts=artifacts)


def _predict_study(
    ctx: JobContext, pacs: PacsSource, key: bytes, out: Path, predict: Callable[[list[Path]], tuple[dict, dict]]
) -> tuple[dict, dict]:
    """A PACS study's radiographs fetched into the private folder (removed at the end), predicted, and with
    --store the SEGs and reports sent back to the study."""
    from shared.dicomweb import read_request, request_path
    from workers.classifier.pacs import fetch_radiographs, store

    settings = get_settings()
    study = read_request(settings.layout.private_dir, pacs.request)
    fetched = settings.layout.private_dir / "pacs" / f"r{ctx.run_id}"
    ctx.progress(0, None, f"fetching the study's radiographs from {pacs.url}", force=True)
    try:
        files = fetch_radiographs(settings, pacs.url, study, key, fetched)
        metrics, artifacts = predict(files)
    finally:
        shutil.rmtree(fetched, ignore_errors=True)
    metrics["pacs"] = pacs.url
    if pacs.store:
        with (out / "predictions.csv").open() as handle:
            made = [out / row[column] for row in csv.DictReader(handle) for column in ("seg", "report") if row[column]]
        ctx.progress(0, None, f"storing {len(made)} SEG and report file(s) in the study at {pacs.url}", force=True)
        metrics["stored"] = store(settings, pacs.url, made)
    request_path(settings.layout.private_dir, pacs.request).unlink(missing_ok=True)
    return metrics, artifacts
