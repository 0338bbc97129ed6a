"""Test figures of a segmentation that nnU-Net's summary does not give, from the predicted and reference
masks themselves.

nnU-Net's per-case Dice is NaN on a case with an empty reference and an empty prediction and 0 on one with
any false positive, so its mean over a test set that holds non-fractured cases is not "Dice on fractures".
Reported here instead, each with its 95% bootstrap interval (workers/bootstrap.py):
- Dice on the fractured test cases only (their mean);
- the share of non-fractured test cases with any predicted fracture pixel;
- per picture, "the mask is not empty" as a fracture detector: its sensitivity and specificity.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from workers.bootstrap import interval, mean_interval
from workers.nnunet.nifti import read_case

SUFFIX = ".nii.gz"


def case_figures(references: Path, predictions: Path) -> dict[str, dict[str, Any]]:
    """case -> {fractured, dice (None where the reference is empty), predicted_pixels} for every reference."""
    figures = {}
    for reference_file in sorted(references.glob(f"*{SUFFIX}")):
        case = reference_file.name.removesuffix(SUFFIX)
        reference = read_case(reference_file) > 0
        predicted = read_case(predictions / reference_file.name) > 0
        overlap, total = int((reference & predicted).sum()), int(reference.sum() + predicted.sum())
        figures[case] = {
            "fractured": bool(reference.any()),
            "dice": 2 * overlap / total if reference.any() else None,
            "predicted_pixels": int(predicted.sum()),
        }
    return figures


def _share(flags: np.ndarray) -> float | None:
    return float(flags.mean()) if len(flags) else None


def report(figures: dict[str, dict[str, Any]]) -> dict[str, Any]:
    fractured = [f for f in figures.values() if f["fractured"]]
    negatives = [f for f in figures.values() if not f["fractured"]]
    dice = np.array([f["dice"] for f in fractured], dtype=float)
    found = np.array([f["predicted_pixels"] > 0 for f in fractured])
    false_alarm = np.array([f["predicted_pixels"] > 0 for f in negatives])
    specificity = None if not len(false_alarm) else 1 - float(false_alarm.mean())
    fp_interval = interval(_share, (false_alarm,))
    return {
        "fractured_cases": len(fractured),
        "non_fractured_cases": len(negatives),
        "dice_fractured": float(dice.mean()) if len(dice) else None,
        "false_positive_share": _share(false_alarm),
        "detection_sensitivity": _share(found),
        "detection_specificity": specificity,
        "intervals": {
            "dice_fractured": mean_interval(dice),
            "false_positive_share": fp_interval,
            "detection_sensitivity": interval(_share, (found,)),
            "detection_specificity": None
            if fp_interval is None
            else {"low": 1 - fp_interval["high"], "high": 1 - fp_interval["low"]},
        },
    }
