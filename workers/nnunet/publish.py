"""What an nnU-Net evaluation puts in MLflow beyond its figures: the best, median and worst test case as
overlays, nnU-Net's postprocessing choice, and the fold set as a version of `Dataset<ID>_FracAtlas-nnunet`
(its plans, dataset.json and a model.json naming the folds, which stay in nnUNet_results on the data root)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from shared.contract import Experiment
from shared.model_registry import RUN_TAG, nnunet_model_name
from shared.settings import Settings
from workers.tracking.job import JobTracking, tag_figure

log = logging.getLogger(__name__)


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
            from workers.nnunet.overlays import held_out_case_overlays  # matplotlib: only where it draws

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
            "cv_dice_mean": tag_figure(description["cv_dice_mean"]),
            "test_dice_mean": tag_figure(description["test_dice_mean"]),
        },
        f"nnU-Net {experiment.configuration} fold set of r{run_id}; weights in {results}",
    )
