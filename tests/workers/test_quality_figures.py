"""The quality report's figures against values worked out by hand on tiny case sets, and its bootstrap
intervals against SciPy's."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from workers.bootstrap import interval, mean_interval
from workers.classifier.metrics import binary_metrics, threshold_for_specificity
from workers.nnunet.cross_validation import grouped_folds
from workers.nnunet.nifti import write_case
from workers.nnunet.segmentation_report import case_figures, report


def square(size: int, top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[top : top + side, left : left + side] = 1
    return mask


def test_dice_on_fractures_false_positives_and_detection_by_hand(tmp_path: Path) -> None:
    references, predictions = tmp_path / "labels", tmp_path / "predicted"
    references.mkdir()
    predictions.mkdir()
    empty = np.zeros((16, 16), np.uint8)
    cases = {
        "a": (square(16, 0, 0, 4), square(16, 0, 0, 4)),  # Dice 1
        "b": (square(16, 0, 0, 4), square(16, 0, 2, 4)),  # 8 of 16 + 16 overlap: Dice 0.5
        "c": (square(16, 0, 0, 4), empty),  # missed: Dice 0, not detected
        "n1": (empty, empty),  # a clean negative
        "n2": (empty, square(16, 8, 8, 2)),  # a false positive
        "n3": (empty, empty),
        "n4": (empty, empty),
    }
    for case, (reference, predicted) in cases.items():
        write_case(references / f"{case}.nii.gz", reference)
        write_case(predictions / f"{case}.nii.gz", predicted)
    figures = case_figures(references, predictions, {"background": 0, "fracture": 1})
    assert figures["b"]["dice"] == 0.5 and figures["n1"]["dice"] is None and figures["n2"]["predicted_pixels"] == 4
    figures_report = report(figures)
    assert figures_report["fractured_cases"] == 3 and figures_report["non_fractured_cases"] == 4
    assert figures_report["dice_fractured"] == pytest.approx(0.5)  # (1 + 0.5 + 0) / 3
    assert figures_report["false_positive_share"] == 0.25
    assert figures_report["detection_sensitivity"] == pytest.approx(2 / 3)
    assert figures_report["detection_specificity"] == 0.75
    assert figures_report["dice_per_category"] == {"fracture": pytest.approx(0.5)}, "one label: the same figure"
    assert figures_report["dice_category_mean"] == pytest.approx(0.5)
    for key, bounds in figures_report["intervals"].items():
        if key != "dice_per_category":
            assert 0 <= bounds["low"] <= figures_report[key] <= bounds["high"] <= 1, key
    specificity, false_positives = (
        figures_report["intervals"]["detection_specificity"],
        figures_report["intervals"]["false_positive_share"],
    )
    assert specificity["low"] == pytest.approx(1 - false_positives["high"])


def test_dice_per_category_counts_only_the_cases_that_hold_it(tmp_path: Path) -> None:
    references, predictions = tmp_path / "references", tmp_path / "predictions"
    references.mkdir(), predictions.mkdir()
    both = square(16, 0, 0, 4) + 2 * square(16, 8, 8, 4)  # label 1 top left, label 2 bottom right
    cases = {
        "x": (both, square(16, 0, 0, 4) + 2 * square(16, 8, 10, 4)),  # 1 exact, 2 half: Dice 1 and 0.5
        "y": (square(16, 0, 0, 4), 2 * square(16, 0, 0, 4)),  # label 1 predicted as 2: Dice 0, 2 absent
        "z": (2 * square(16, 4, 4, 4), 2 * square(16, 4, 4, 4)),  # label 2 only: Dice 1
    }
    for case, (reference, predicted) in cases.items():
        write_case(references / f"{case}.nii.gz", reference.astype(np.uint8))
        write_case(predictions / f"{case}.nii.gz", predicted.astype(np.uint8))
    figures = report(case_figures(references, predictions, {"background": 0, "crack": 1, "plate": 2}))
    assert figures["cases_per_category"] == {"crack": 2, "plate": 2}
    assert figures["dice_per_category"]["crack"] == pytest.approx(0.5)  # (1 + 0) / 2
    assert figures["dice_per_category"]["plate"] == pytest.approx(0.75)  # (0.5 + 1) / 2
    assert figures["dice_category_mean"] == pytest.approx(0.625)
    assert figures["dice_fractured"] == pytest.approx((2 * 24 / 64 + 1 + 1) / 3), "any label against any label"
    assert set(figures["intervals"]["dice_per_category"]) == {"crack", "plate"}


def test_bootstrap_intervals_agree_with_scipy() -> None:
    values = np.random.default_rng(4).beta(2, 5, size=80)
    ours = mean_interval(values)
    theirs = stats.bootstrap((values,), np.mean, n_resamples=20_000, method="percentile", random_state=1)
    assert ours["low"] == pytest.approx(theirs.confidence_interval.low, abs=0.006)
    assert ours["high"] == pytest.approx(theirs.confidence_interval.high, abs=0.006)
    generic = interval(lambda v: float(np.mean(v)), (values,))
    assert generic["low"] == pytest.approx(ours["low"], abs=0.006) and generic["high"] == pytest.approx(
        ours["high"], abs=0.006
    )
    flat = mean_interval([0.7, 0.7, 0.7])
    assert flat["low"] == pytest.approx(0.7) and flat["high"] == pytest.approx(0.7), "no spread, no width"
    assert mean_interval([0.5]) is None


def test_the_90_percent_specificity_threshold_comes_from_validation_and_is_applied_to_test() -> None:
    val_labels = np.array([0] * 10 + [1] * 4)
    val_scores = np.array([0.0, 0.1, 0.1, 0.2, 0.3, 0.35, 0.4, 0.5, 0.6, 0.9, 0.55, 0.7, 0.8, 0.95])
    cut = threshold_for_specificity(val_labels, val_scores)
    assert 0.6 < cut < 0.61, "9 of 10 validation negatives (up to 0.6) score below it"
    test_labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    test_scores = np.array([0.1, 0.2, 0.65, 0.3, 0.62, 0.5, 0.9, 0.7])
    metrics = binary_metrics(test_labels, test_scores, 0.5, cut, with_intervals=True)
    assert metrics["sensitivity_at_90_specificity"] == 0.75  # 0.62, 0.9, 0.7 of four
    assert metrics["specificity_at_90_threshold"] == 0.75  # 0.65 is over the cut
    assert metrics["roc_auc"] == pytest.approx(14 / 16)  # 0.62 and 0.5 rank below 0.65
    for key in ("roc_auc", "pr_auc", "balanced_accuracy", "sensitivity_at_90_specificity"):
        bounds = metrics["intervals"][key]
        assert bounds["low"] <= metrics[key] <= bounds["high"], key


def test_the_five_folds_keep_each_group_in_one_fold_and_share_the_labels_out() -> None:
    cases = [f"c{i:02d}" for i in range(40)]
    group_of = {case: case for case in cases} | {"c01": "c00", "c02": "c00", "c11": "c10"}
    label_of = {case: int(index < 20) for index, case in enumerate(cases)}
    folds = grouped_folds(group_of, label_of, seed=0, n_folds=5)
    fold_of = {case: k for k, fold in enumerate(folds) for case in fold["val"]}
    assert sorted(fold_of) == cases and fold_of["c00"] == fold_of["c01"] == fold_of["c02"]
    assert fold_of["c10"] == fold_of["c11"]
    for k, fold in enumerate(folds):
        assert set(fold["train"]) == set(cases) - set(fold["val"]), k
        positives = Counter(label_of[case] for case in fold["val"])
        assert 3 <= positives[1] <= 5 and 3 <= positives[0] <= 5, (k, positives)
    assert folds == grouped_folds(group_of, label_of, seed=0, n_folds=5)
