"""Test figures of a segmentation that nnU-Net's summary does not give, from the predicted and reference
masks themselves.

nnU-Net's per-case Dice is NaN on a case with an empty reference and an empty prediction and 0 on one with
any false positive, so its mean over a test set that holds non-fractured cases is not "Dice on fractures".
Reported here instead, each with its 95% bootstrap interval (workers/bootstrap.py):
- Dice on the fractured test cases only (their mean);
- the share of non-fractured test cases with any predicted fracture pixel;
- per picture, "the mask is not empty" as a fracture detector: its sensitivity and specificity;
- Dice per label (a category of the release) on the test cases that hold it, and the mean over the labels.
Any label counts as "fractured" in the first three. With `groups` (case -> patient or study), the intervals
draw whole groups.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from workers.bootstrap import interval, mean_interval
from workers.nnunet.nifti import read_case

SUFFIX = ".nii.gz"


def _dice(reference: np.ndarray, predicted: np.ndarray) -> float | None:
    """None where the reference is empty."""
    if not reference.any():
        return None
    return 2 * int((reference & predicted).sum()) / int(reference.sum() + predicted.sum())


def case_figures(references: Path, predictions: Path, labels: dict[str, int]) -> dict[str, dict[str, Any]]:
    """case -> {fractured, dice (any label; None where the reference is empty), predicted_pixels, per_label
    (label name -> its Dice, None where the reference lacks it)} for every reference; `labels`: dataset.json's."""
    figures = {}
    for reference_file in sorted(references.glob(f"*{SUFFIX}")):
        case = reference_file.name.removesuffix(SUFFIX)
        reference = read_case(reference_file)
        predicted = read_case(predictions / reference_file.name)
        figures[case] = {
            "fractured": bool(reference.any()),
            "dice": _dice(reference > 0, predicted > 0),
            "predicted_pixels": int(np.count_nonzero(predicted)),
            "per_label": {
                name: _dice(reference == value, predicted == value) for name, value in labels.items() if value
            },
        }
    return figures


def _share(flags: np.ndarray) -> float | None:
    return float(flags.mean()) if len(flags) else None


def report(figures: dict[str, dict[str, Any]], groups: dict[str, str] | None = None) -> dict[str, Any]:
    fractured = [case for case, f in figures.items() if f["fractured"]]
    negatives = [case for case, f in figures.items() if not f["fractured"]]
    dice = np.array([figures[case]["dice"] for case in fractured], dtype=float)
    found = np.array([figures[case]["predicted_pixels"] > 0 for case in fractured])
    false_alarm = np.array([figures[case]["predicted_pixels"] > 0 for case in negatives])
    specificity = None if not len(false_alarm) else 1 - float(false_alarm.mean())

    def of(cases: list[str]) -> list[str] | None:
        return [groups[case] for case in cases] if groups is not None else None

    fp_interval = interval(_share, (false_alarm,), groups=of(negatives))
    by_label = _by_label(figures, of(list(figures)))
    return {
        **by_label,
        "fractured_cases": len(fractured),
        "non_fractured_cases": len(negatives),
        "dice_fractured": float(dice.mean()) if len(dice) else None,
        "false_positive_share": _share(false_alarm),
        "detection_sensitivity": _share(found),
        "detection_specificity": specificity,
        "intervals": {
            "dice_fractured": mean_interval(dice, of(fractured)),
            "false_positive_share": fp_interval,
            "detection_sensitivity": interval(_share, (found,), groups=of(fractured)),
            "detection_specificity": None
            if fp_interval is None
            else {"low": 1 - fp_interval["high"], "high": 1 - fp_interval["low"]},
            **by_label.pop("label_intervals"),
        },
    }


def _label_mean(table: np.ndarray) -> float | None:
    """The mean over labels of each label's mean Dice; `table` is (cases, labels), NaN where a case lacks one."""
    means = [np.mean(column[~np.isnan(column)]) for column in table.T if (~np.isnan(column)).any()]
    return float(np.mean(means)) if means else None


def _by_label(figures: dict[str, dict[str, Any]], groups: list[str] | None) -> dict[str, Any]:
    """Dice per category (a label; on the cases that hold it) and their mean, each with its interval."""
    names = list(next(iter(figures.values()))["per_label"]) if figures else []
    rows = [[f["per_label"][name] for name in names] for f in figures.values()]
    table = np.array(rows, dtype=float).reshape(len(figures), len(names))  # None becomes NaN
    per_label, intervals = {}, {}
    for index, name in enumerate(names):
        held = ~np.isnan(table[:, index])
        column = table[:, index][held]
        per_label[name] = float(column.mean()) if len(column) else None
        intervals[name] = mean_interval(column, None if groups is None else list(np.asarray(groups)[held]))
    return {
        "dice_per_category": per_label,
        "cases_per_category": {name: int((~np.isnan(table[:, i])).sum()) for i, name in enumerate(names)},
        "dice_category_mean": _label_mean(table),
        "label_intervals": {
            "dice_per_category": intervals,
            "dice_category_mean": interval(_label_mean, (table,), groups=groups),
        },
    }
