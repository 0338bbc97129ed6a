"""The end of a training run: per-fold validation Dice, the fold ensemble's prediction of the held-out
test images (imagesTs) and nnU-Net's own evaluation of it against labelsTs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.contract import Experiment
from shared.errors import InputError
from shared.settings import Settings
from workers.gpu.folds import predict_command, validation_dice
from workers.nnunet import environment, run_tool, tool


def evaluate_run(
    settings: Settings,
    experiment: Experiment,
    folds: list[int],
    out: Path,
    log: Path,
    on_line: Callable[[str], None],
    should_stop: Callable[[], bool],
) -> tuple[dict[str, Any], dict[str, str]]:
    if not folds:
        raise InputError("no fold of this run finished training; nothing to evaluate")
    raw = experiment.raw(settings.layout)
    per_fold = {str(fold): validation_dice(experiment.fold_folder(settings.layout, fold)) for fold in folds}
    known = [dice for dice in per_fold.values() if dice is not None]
    metrics: dict[str, Any] = {
        "folds": per_fold,
        "cv_dice_mean": sum(known) / len(known) if known else None,
        "folds_used": folds,
    }
    predictions = out / "test_predictions"
    if not any((raw / "imagesTs").glob("*.nii.gz")):
        return {**metrics, "test_cases": 0}, {"results": str(experiment.results(settings.layout))}
    env = environment(settings)
    steps = [
        ("nnUNetv2_predict", predict_command(experiment, raw / "imagesTs", predictions, folds)),
        (
            "nnUNetv2_evaluate_folder",
            [
                tool("nnUNetv2_evaluate_folder"),
                str(raw / "labelsTs"),
                str(predictions),
                "-djfile",
                str(raw / "dataset.json"),
                "-pfile",
                str(experiment.results(settings.layout) / "plans.json"),
            ],
        ),
    ]
    for step, command in steps:
        run_tool(step, command, env, log, on_line, should_stop)
    summary = json.loads((predictions / "summary.json").read_text())
    per_case = {
        Path(case["reference_file"]).name.removesuffix(".nii.gz"): case["metrics"]["1"]["Dice"]
        for case in summary["metric_per_case"]
    }
    metrics |= {
        "test_dice_mean": summary["foreground_mean"]["Dice"],
        "test_cases": len(per_case),
        "test_dice_per_case": per_case,
    }
    artifacts = {
        "test_predictions": str(predictions),
        "test_summary": str(predictions / "summary.json"),
        "results": str(experiment.results(settings.layout)),
        "log": str(log),
    }
    return metrics, artifacts
