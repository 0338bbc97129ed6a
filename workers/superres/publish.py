"""What a super-resolution network puts in MLflow beyond its curves: its sample crops and a registered
version per scale."""

from __future__ import annotations

from typing import Any

from shared.model_registry import RUN_TAG, superres_model_name
from workers.tracking.job import JobTracking, tag_figure


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
            "psnr_gain_over_bicubic": tag_figure(metrics.get("psnr_gain_over_bicubic")),
            "ssim_gain_over_bicubic": tag_figure(metrics.get("ssim_gain_over_bicubic")),
        },
        f"x{scale} super-resolution of r{run_id}, learned from the release's large radiographs",
    )
