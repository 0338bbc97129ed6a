"""What a bundle puts in MLflow's registry: an export, the bundle itself as a version of
`Dataset<ID>_FracAtlas-bundle`; an import, the bundle's classifier and folds as versions of this site's
classifier and nnU-Net models, so that `dispatch predict --model NAME@ALIAS` finds them here too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.bundles import CARD, CLASSIFIER_FOLDER
from shared.model_registry import INPUT_TAG, RUN_TAG, bundle_model_name, classifier_model_name, nnunet_model_name
from workers.tracking.job import JobTracking, tag_figure


def publish_export(tracking: JobTracking, run_id: int, dataset_id: int, bundle: Path, card: dict[str, Any]) -> None:
    if tracking.outbox is None:
        return
    tracking.artifact(bundle, "bundle")
    classifier = card.get("classifier", {})
    tracking.register(
        bundle_model_name(dataset_id),
        "bundle",
        {
            RUN_TAG: f"r{run_id}",
            "format": card["format"],
            "segmentation_run": card["segmentation"]["run"],
            "folds": ",".join(map(str, card["segmentation"]["folds"])),
            "classifier_run": classifier.get("run", "-"),
        },
        f"{bundle.name}: r{run_id}'s export (install it elsewhere with `dispatch import`)",
    )


def publish_import(tracking: JobTracking, run_id: int, dataset_id: int, keep: Path, card: dict[str, Any]) -> None:
    if tracking.outbox is None:
        return
    origin = f"{card['name']} {card['segmentation']['run']}, exported {card['created']}"
    tracking.artifact(keep / CARD, "nnunet_model")
    tracking.register(
        nnunet_model_name(dataset_id),
        "nnunet_model",
        {RUN_TAG: f"r{run_id}", "folds": ",".join(map(str, card["segmentation"]["folds"])), "imported": origin},
        f"imported: {origin}",
    )
    if "classifier" not in card:
        return
    classifier = card["classifier"]
    tracking.artifact(keep / CLASSIFIER_FOLDER / "classifier.pt", "classifier")
    tracking.register(
        classifier_model_name(dataset_id),
        "classifier",
        {
            RUN_TAG: f"r{run_id}",
            INPUT_TAG: classifier["input"],
            "best_val_auc": tag_figure(classifier["figures"].get("best_val_auc")),
            "backbone": classifier["backbone"],
            "imported": origin,
        },
        f"imported: {classifier['name']} on {classifier['input']}, {origin}",
    )
