"""What the end of a training puts in MLflow beyond its figures: pictures and a registered model version.

- an nnU-Net evaluation: the best, median and worst test case as overlays; the fold set as a version of
  `Dataset<ID>_FracAtlas-nnunet` (its plans, dataset.json and a model.json naming the folds, which stay in
  nnUNet_results on the data root);
- a classifier: its ROC, precision-recall and confusion pictures; its checkpoint as a version of
  `Dataset<ID>_FracAtlas-classifier`, tagged with its input.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from shared.contract import Experiment
from shared.model_registry import INPUT_TAG, RUN_TAG, classifier_model_name, nnunet_model_name, superres_model_name
from shared.settings import Settings
from workers.tracking.job import JobTracking

log = logging.getLogger(__name__)


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def publish_evaluation(
    tracking: JobTracking,
    settings: Settings,
    experiment: Experiment,
    run_id: int,
    metrics: dict[str, Any],
    artifacts: dict[str, str],
    folder: Path,
) -> None:
    if tracking.outbox is None:
        return
    if "postprocessing" in metrics:  # nnU-Net's choice, in words; its Dice before and after are metrics
        tracking.params({"postprocessing": metrics["postprocessing"]["chosen"]})
    if metrics.get("test_dice_per_case"):
        try:
            from workers.tracking.pictures import held_out_case_overlays

            raw = experiment.raw(settings.layout)
            pictures = held_out_case_overlays(
                raw, Path(artifacts["test_predictions"]), metrics["test_dice_per_case"], folder / "pictures"
            )
            for picture in pictures:
                tracking.artifact(picture, "test_cases", on_run=True)
        except Exception as error:  # noqa: BLE001 - a picture never costs a run
            log.warning("r%s: no test case pictures (%s)", run_id, error)
    model = folder / "nnunet_model"
    model.mkdir(parents=True, exist_ok=True)
    results = Path(artifacts["results"])
    for name in ("plans.json", "dataset.json", "dataset_fingerprint.json"):
        if (results / name).is_file():
            shutil.copyfile(results / name, model / name)
    description = {
        "dataset_id": experiment.dataset_id,
        "configuration": experiment.configuration,
        "trainer": experiment.trainer,
        "plans": experiment.plans,
        "folds": metrics.get("folds_used", []),
        "results": str(results),
        "cv_dice_mean": metrics.get("cv_dice_mean"),
        "test_dice_mean": metrics.get("test_dice_mean"),
        "test_dice_fractured": metrics.get("test_dice_fractured"),
        "postprocessing": metrics.get("postprocessing", {}).get("chosen"),
    }
    (model / "model.json").write_text(json.dumps(description, indent=1))
    tracking.artifact(model, "nnunet_model")
    tracking.register(
        nnunet_model_name(experiment.dataset_id),
        "nnunet_model",
        {
            RUN_TAG: f"r{run_id}",
            "folds": ",".join(map(str, description["folds"])),
            "cv_dice_mean": _figure(description["cv_dice_mean"]),
            "test_dice_mean": _figure(description["test_dice_mean"]),
        },
        f"nnU-Net {experiment.configuration} fold set of r{run_id}; weights in {results}",
    )


def publish_classifier(
    tracking: JobTracking, run_id: int, dataset_id: int, mode: str, metrics: dict[str, Any], artifacts: dict[str, str]
) -> None:
    if tracking.outbox is None:
        return
    for key in ("roc_png", "pr_png", "confusion_png"):
        if key in artifacts:
            tracking.artifact(artifacts[key])
            tracking.artifact(artifacts[key], f"classifier_{mode.replace('+', '_')}", on_run=True)
    tracking.artifact(artifacts["checkpoint"], "classifier")
    test = metrics.get("test", {})
    tracking.register(
        classifier_model_name(dataset_id),
        "classifier",
        {
            RUN_TAG: f"r{run_id}",
            INPUT_TAG: mode,
            "test_roc_auc": _figure(test.get("roc_auc")),
            "best_val_auc": _figure(metrics.get("best_val_auc")),
        },
        f"ResNet18 on {mode} of r{run_id}",
    )


def publish_superres(
    tracking: JobTracking, run_id: int, dataset_id: int, scale: int, metrics: dict[str, Any], artifacts: dict[str, str]
) -> None:
    """The sample crops on the job's and the run's MLflow runs; the network as a registered version."""
    if tracking.outbox is None:
        return
    tracking.artifact(artifacts["samples_png"])
    tracking.artifact(artifacts["samples_png"], f"superres_x{scale}", on_run=True)
    tracking.artifact(artifacts["model"], "superres")
    tracking.register(
        superres_model_name(dataset_id, scale),
        "superres",
        {
            RUN_TAG: f"r{run_id}",
            "scale": str(scale),
            "psnr_gain_over_bicubic": _figure(metrics.get("psnr_gain_over_bicubic")),
            "ssim_gain_over_bicubic": _figure(metrics.get("ssim_gain_over_bicubic")),
        },
        f"x{scale} super-resolution of r{run_id}, learned from the release's large radiographs",
    )
