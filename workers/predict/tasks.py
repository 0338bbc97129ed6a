"""Prediction as Celery tasks: new radiographs, given as files or as a PACS study (its name stays
`classify.predict`, so that messages queued before prediction had its own room still run); a trained model
exported as a bundle for another site; and another site's bundle imported here.

Every worker imports this module (the app includes it): torch is imported inside the task, so that cpu
workers never load it.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.contract import ExportRequest, ImportRequest, PacsSource, PredictRequest, RankRequest
from shared.model_registry import classifier_model_name, nnunet_model_name
from shared.read_model import get_run, latest_succeeded_run, trained_segmentation
from shared.settings import Settings, get_settings
from shared.tasknames import CLASSIFY_PREDICT, PREDICT_EXPORT, PREDICT_IMPORT, PREDICT_RANK
from workers.runtime import JobContext, Outcome, job_task

if TYPE_CHECKING:  # the module imports torch, which a cpu worker never loads
    from workers.predict.files import Annotations, DicomOutput, Predictor

Predict = Callable[[list[Path]], tuple[dict, dict]]


@job_task(CLASSIFY_PREDICT)
def predict(ctx: JobContext) -> Outcome:
    """Masks, overlays and fracture probabilities for new radiographs, given as files or as a PACS study."""
    from workers.predict.files import Annotations, predict_files

    request = PredictRequest.parse(ctx.run_params)
    out = Path(request.out) if request.out else ctx.folder / "predictions"
    # The tool shows this as the predictions' model version; `dispatch ingest --previous` takes this run.
    annotations = Annotations(request.annotations, f"r{ctx.run_id}", request.image_url) if request.annotations else None
    private = get_settings().layout.private_predictions(ctx.run_id)
    predictor = _predictor(request, out if request.out else private, annotations)

    def predict_these(files: list[Path]) -> tuple[dict, dict]:
        ctx.progress(0, None, f"{len(files)} file(s): nnU-Net folds {predictor.folds} and the classifier", force=True)
        return predict_files(predictor, files, out, ctx.tool_run("predict"))

    if request.pacs is None:
        metrics, artifacts = predict_these([Path(name) for name in request.files])
        if request.store_to:
            metrics |= _store_to(ctx, request.store_to, predictor.dicom.folder, out)
    else:
        metrics, artifacts = _predict_study(ctx, request.pacs, predictor.dicom, out, predict_these)
    return Outcome(metrics=metrics, artifacts=artifacts, run_metrics=metrics, run_artifacts=artifacts)


@job_task(PREDICT_RANK)
def rank(ctx: JobContext) -> Outcome:
    """Unlabelled radiographs ordered by the model's doubt, the top N as an annotation tool imports them."""
    from workers.predict.ranking import rank_files

    request = RankRequest.parse(ctx.run_params)
    out = Path(request.out) if request.out else ctx.folder / "rank"
    # Ranking writes no DICOM: of its DICOM output, only the pseudonym key is used, to name DICOM pictures.
    predictor = _predictor(request, get_settings().layout.private_dir)
    ctx.progress(0, None, f"{len(request.files)} file(s): each of nnU-Net's folds {predictor.folds} alone", force=True)
    metrics, artifacts = rank_files(predictor, request, [Path(f) for f in request.files], out, ctx.tool_run("rank"),
                                    f"r{ctx.run_id}")  # fmt: skip
    return Outcome(metrics=metrics, artifacts=artifacts, run_metrics=metrics, run_artifacts=artifacts)


def _predictor(
    request: PredictRequest | RankRequest, dicom_folder: Path, annotations: Annotations | None = None
) -> Predictor:
    """The run's folds and classifier; DICOM pictures' SEGs and reports go to `dicom_folder`, named by the data
    root's pseudonym key."""
    from workers.classifier.model import load_classifier
    from workers.imaging.pseudonyms import private_key
    from workers.predict.dicom_seg import Algorithm
    from workers.predict.files import DicomOutput, Predictor

    settings = get_settings()
    experiment, folds = trained_segmentation(request.seg_run)
    dicom = DicomOutput(
        dicom_folder,
        private_key(settings.layout.private_dir),
        Algorithm(nnunet_model_name(request.dataset_id), f"r{request.seg_run}"),
        Algorithm(classifier_model_name(request.dataset_id), f"r{request.classifier_run}"),
        isinstance(request, PredictRequest) and request.probabilities,
    )
    return Predictor(settings, load_classifier(Path(request.checkpoint)), experiment, folds, dicom, annotations)


def _predict_study(
    ctx: JobContext, pacs: PacsSource, dicom: DicomOutput, out: Path, predict_these: Predict
) -> tuple[dict, dict]:
    """A PACS study's radiographs fetched into the private folder (removed at the end), predicted, and with
    --store the SEGs and reports sent back to the study (and their local copies removed, unless
    --keep-local)."""
    from shared.dicomweb import read_request, request_path
    from workers.predict.pacs import fetch_radiographs, store

    settings = get_settings()
    study = read_request(settings.layout.private_dir, pacs.request)
    fetched = settings.layout.private_dir / "pacs" / f"r{ctx.run_id}"
    ctx.progress(0, None, f"fetching the study's radiographs from {pacs.url}", force=True)
    try:
        files = fetch_radiographs(settings, pacs.url, study, dicom.key, fetched)
        metrics, artifacts = predict_these(files)
    finally:
        shutil.rmtree(fetched, ignore_errors=True)
    metrics["pacs"] = pacs.url
    if pacs.store:
        rows, made = _dicom_outputs(out, dicom.folder)
        ctx.progress(0, None, f"storing {len(made)} SEG and report file(s) in the study at {pacs.url}", force=True)
        metrics["stored"] = store(settings, pacs.url, made)
        link = _viewer_link(settings, pacs.url, study.study, [dicom.folder / row["seg"] for row in rows if row["seg"]])
        if link:
            metrics["viewer"] = link
            ctx.tracking.params({"viewer": link})  # MLflow takes figures as metrics: the link as a parameter
        if not pacs.keep_local:
            for path in made:
                path.unlink()
            if dicom.folder != out and not any(dicom.folder.iterdir()):
                dicom.folder.rmdir()
            artifacts.pop("dicom", None)
        metrics["kept_local"] = pacs.keep_local
    request_path(settings.layout.private_dir, pacs.request).unlink(missing_ok=True)
    return metrics, artifacts


def _dicom_outputs(out: Path, folder: Path) -> tuple[list[dict[str, str]], list[Path]]:
    """predictions.csv's rows, and the SEGs and reports they name (in `folder`)."""
    with (out / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    return rows, [folder / row[column] for row in rows for column in ("seg", "report") if row[column]]


def _store_to(ctx: JobContext, url: str, folder: Path, out: Path) -> dict[str, Any]:
    """--store-to: the DICOM pictures' SEGs and reports sent to the PACS at `url`, each into its own study;
    with the stack's own PACS, a viewer link per study (opened on its first SEG)."""
    import pydicom

    from workers.predict.pacs import store

    settings = get_settings()
    rows, made = _dicom_outputs(out, folder)
    if not made:
        return {"pacs": url, "stored": 0}
    ctx.progress(0, None, f"storing {len(made)} SEG and report file(s) at {url}", force=True)
    stored = store(settings, url, made)
    segs_by_study: dict[str, list[Path]] = {}
    for row in rows:
        if row.get("seg"):
            seg = folder / row["seg"]
            study = pydicom.dcmread(seg, stop_before_pixels=True).StudyInstanceUID
            segs_by_study.setdefault(study, []).append(seg)
    links = [_viewer_link(settings, url, study, segs) for study, segs in segs_by_study.items()]
    found = [link for link in links if link]
    if found:
        ctx.tracking.params({"viewer": " ".join(found)})
    return {"pacs": url, "stored": stored, **({"viewer": " ".join(found)} if found else {})}


def _viewer_link(settings: Settings, url: str, study: str, segs: list[Path]) -> str | None:
    """The stored study in the stack's own viewer, opened on the first SEG (a link that names no patient)."""
    import pydicom

    from shared.viewer_links import viewer_link

    series = pydicom.dcmread(segs[0], stop_before_pixels=True).SeriesInstanceUID if segs else None
    return viewer_link(settings, url, study, series)


@job_task(PREDICT_EXPORT)
def export(ctx: JobContext) -> Outcome:
    """A training run's folds and a classifier as one bundle (workers/predict/bundle.py)."""
    from workers.predict.bundle import ClassifierPart, Provenance, export_bundle
    from workers.predict.publish import publish_export

    request = ExportRequest.parse(ctx.run_params)
    experiment, folds = trained_segmentation(request.seg_run)
    classifier = None
    if request.checkpoint is not None and request.input is not None:
        classifier = ClassifierPart(Path(request.checkpoint), request.input)
    provenance = Provenance(
        ingest=latest_succeeded_run(("ingest", "pipeline"), request.dataset_id),
        segmentation=get_run(request.seg_run),
        classifier=get_run(request.classifier_run) if request.classifier_run else None,
    )
    ctx.progress(0, None, f"exporting folds {folds} of r{request.seg_run}", force=True)
    out = Path(request.out)
    card = export_bundle(get_settings(), experiment, folds, classifier, provenance, out, ctx.tool_run("export"))
    publish_export(ctx.tracking, ctx.run_id, request.dataset_id, out, card)
    metrics = {"folds": folds, "files": len(card["files"]), "bytes": out.stat().st_size, "format": card["format"]}
    artifacts = {"bundle": str(out)}
    return Outcome(metrics=metrics, artifacts=artifacts, run_metrics=metrics, run_artifacts=artifacts)


@job_task(PREDICT_IMPORT)
def import_bundle(ctx: JobContext) -> Outcome:
    """Another site's bundle installed (workers/predict/install.py); the run is then a training run and a
    classifier run that `dispatch predict` uses."""
    from shared.bundles import CARD_MARKDOWN, CLASSIFIER_FOLDER
    from shared.read_model import CHECKPOINT_PREFIX
    from workers.predict.install import install_bundle
    from workers.predict.publish import publish_import

    request = ImportRequest.parse(ctx.run_params)
    settings = get_settings()
    keep = settings.layout.imported(ctx.run_id)
    ctx.progress(0, None, f"installing {Path(request.bundle).name} as dataset {request.dataset_id}", force=True)
    card = install_bundle(settings, request, keep, ctx.tool_run("import"))
    publish_import(ctx.tracking, ctx.run_id, request.dataset_id, keep, card)
    segmentation = card["segmentation"]
    metrics: dict = {
        "folds": request.folds,
        "bundle": card["name"],
        "exported": card["created"],
        "trained_as": segmentation["run"],
        "figures": segmentation.get("figures", {}),
    }
    artifacts = {"results": str(request.results(settings.layout)), "model_card": str(keep / CARD_MARKDOWN)}
    if request.classifier_input is not None:
        classifier = card["classifier"]
        metrics[f"classifier {request.classifier_input}"] = {
            "best_val_auc": classifier["figures"].get("best_val_auc"),
            "best_epoch": classifier.get("best_epoch"),
            "test": classifier["figures"].get("test") or {},
            "backbone": classifier["backbone"],
            "weights": classifier.get("weights"),
            "threshold": classifier["threshold"],
        }
        folder = keep / CLASSIFIER_FOLDER
        artifacts[CHECKPOINT_PREFIX + request.classifier_input] = str(folder / "classifier.pt")
        artifacts["onnx"] = str(folder / "classifier.onnx")
    return Outcome(metrics=metrics, artifacts=artifacts, run_metrics=metrics, run_artifacts=artifacts)
