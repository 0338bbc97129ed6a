"""What a trained classifier puts in MLflow beyond its figures: its ROC, precision-recall and confusion
pictures, and its checkpoint as a version of `Dataset<ID>_FracAtlas-classifier`, tagged with its input."""

from __future__ import annotations

from typing import Any

from shared.model_registry import INPUT_TAG, RUN_TAG, classifier_model_name
from workers.tracking.job import JobTracking, tag_figure


def publish_classifier(
    tracking: JobTracking, run_id: int, dataset_id: int, mode: str, metrics: dict[str, Any], artifacts: dict[str, str]
) -> None:
    if tracking.outbox is None:
        return
    # What it started from (--weights auto decides at run time); "weights" is the option as asked.
    tracking.params({"weights_used": metrics.get("weights", "-")})
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
            "test_roc_auc": tag_figure(test.get("roc_auc")),
            "best_val_auc": tag_figure(metrics.get("best_val_auc")),
            "backbone": str(metrics.get("backbone", "resnet18")),
        },
        f"{metrics.get('backbone', 'resnet18')} on {mode} of r{run_id}, weights: {metrics.get('weights', '-')}",
    )
