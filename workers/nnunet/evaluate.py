"""The end of a training run: per-fold validation Dice; nnU-Net's own model selection on the
cross-validation (`nnUNetv2_find_best_configuration`: does keeping the largest component help?); the fold
ensemble's prediction of the held-out test images (imagesTs), with and without the postprocessing it chose
(`nnUNetv2_apply_postprocessing`); nnU-Net's evaluation of both against labelsTs, and the figures on
fractures and on non-fractured pictures with their intervals (segmentation_report.py)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

from shared.contract import Experiment
from shared.errors import InputError
from shared.settings import Settings
from workers.child import ToolRun
from workers.nnunet.commands import environment, run_tool, tool
from workers.nnunet.folds import predict_command, validation_dice
from workers.nnunet.segmentation_report import case_figures, report

INFERENCE_INFORMATION = "inference_information.json"  # find_best_configuration's answer


def _evaluate_command(raw: Path, predictions: Path, results: Path) -> list[str]:
    return [
        tool("nnUNetv2_evaluate_folder"),
        *(str(raw / "labelsTs"), str(predictions)),
        *("-djfile", str(raw / "dataset.json"), "-pfile", str(results / "plans.json")),
    ]


def _case_dice(metrics: dict[str, dict[str, float]]) -> float:
    """A case's Dice in nnU-Net's summary: the mean over its labels (NaN where every one is)."""
    values = [label["Dice"] for label in metrics.values() if label["Dice"] == label["Dice"]]
    return sum(values) / len(values) if values else float("nan")


def _test_figures(raw: Path, predictions: Path) -> dict[str, Any]:
    summary = json.loads((predictions / "summary.json").read_text())
    per_case = {
        Path(case["reference_file"]).name.removesuffix(".nii.gz"): _case_dice(case["metrics"])
        for case in summary["metric_per_case"]
    }
    labels = json.loads((raw / "dataset.json").read_text())["labels"]
    own = report(case_figures(raw / "labelsTs", predictions, labels))
    return {
        "test_dice_mean": summary["foreground_mean"]["Dice"],  # nnU-Net's own (NaN cases left out)
        "test_cases": len(per_case),
        # JSON has no NaN: an empty reference predicted empty is None here
        "test_dice_per_case": {case: None if dice != dice else dice for case, dice in per_case.items()},
        **{f"test_{key}": value for key, value in own.items()},
    }


def describe_postprocessing(pickle_file: Path) -> str:
    """What nnU-Net chose, in words: its postprocessing.pkl holds (functions, their keyword arguments)."""
    with pickle_file.open("rb") as handle:  # trusted: nnU-Net wrote it into this run's results folder
        functions, arguments = pickle.load(handle)
    if not functions:
        return "none"
    return "; ".join(
        f"{getattr(function, '__name__', function)}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
        for function, kwargs in zip(functions, arguments, strict=True)
    )


def evaluate_run(
    settings: Settings,
    experiment: Experiment,
    folds: list[int],
    out: Path,
    run: ToolRun,
) -> tuple[dict[str, Any], dict[str, str]]:
    if not folds:
        raise InputError("no fold of this run finished training; nothing to evaluate")
    raw = experiment.raw(settings.layout)
    results = experiment.results(settings.layout)
    per_fold = {str(fold): validation_dice(experiment.fold_folder(settings.layout, fold)) for fold in folds}
    known = [dice for dice in per_fold.values() if dice is not None]
    metrics: dict[str, Any] = {
        "folds": per_fold,
        "cv_dice_mean": sum(known) / len(known) if known else None,
        "folds_used": folds,
    }
    env = environment(settings)
    run_tool(
        "nnUNetv2_find_best_configuration",
        [
            tool("nnUNetv2_find_best_configuration"),
            str(experiment.dataset_id),
            *("-c", experiment.configuration, "-tr", experiment.trainer, "-p", experiment.plans),
            *("-f", *map(str, folds)),
            *("--disable_ensembling", "-np", "1"),
        ],
        env,
        run,
    )
    chosen = json.loads((results.parent / INFERENCE_INFORMATION).read_text())["best_model_or_ensemble"]
    postprocessing = Path(chosen["postprocessing_file"])
    metrics["postprocessing"] = {
        "chosen": describe_postprocessing(postprocessing),
        "cv_dice_before": chosen["result_on_crossval_pre_pp"],
        "cv_dice_after": chosen["result_on_crossval_post_pp"],
    }
    artifacts = {
        "results": str(results),
        "postprocessing": str(postprocessing),
        "inference_information": str(results.parent / INFERENCE_INFORMATION),
        "log": str(run.log),
    }
    if not any((raw / "imagesTs").glob("*.nii.gz")):
        return {**metrics, "test_cases": 0}, artifacts
    predictions, postprocessed = out / "test_predictions", out / "test_predictions_postprocessed"
    steps = [
        ("nnUNetv2_predict", predict_command(experiment, raw / "imagesTs", predictions, folds)),
        (
            "nnUNetv2_apply_postprocessing",
            [
                tool("nnUNetv2_apply_postprocessing"),
                *("-i", str(predictions), "-o", str(postprocessed), "-pp_pkl_file", str(postprocessing)),
                *(
                    "-np",
                    "1",
                    "-plans_json",
                    str(results / "plans.json"),
                    "-dataset_json",
                    str(results / "dataset.json"),
                ),
            ],
        ),
        ("nnUNetv2_evaluate_folder", _evaluate_command(raw, predictions, results)),
        ("nnUNetv2_evaluate_folder", _evaluate_command(raw, postprocessed, results)),
    ]
    for step, command in steps:
        run_tool(step, command, env, run)
    # The headline is the model as nnU-Net selected it (with its postprocessing); the raw ensemble beside it.
    metrics |= _test_figures(raw, postprocessed)
    metrics["without_postprocessing"] = _test_figures(raw, predictions)
    artifacts |= {
        "test_predictions": str(postprocessed),
        "test_summary": str(postprocessed / "summary.json"),
        "test_predictions_raw": str(predictions),
        "test_summary_raw": str(predictions / "summary.json"),
    }
    return metrics, artifacts
