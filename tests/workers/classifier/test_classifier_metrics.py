"""The classifier's metrics against cases worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from workers.classifier.metrics import average_precision, binary_metrics, choose_threshold, roc_auc, roc_curve

# Ranked by score: P(0.9) P(0.8) N(0.6) P(0.4) N(0.35) N(0.1)
LABELS = np.array([1, 1, 0, 0, 1, 0])
SCORES = np.array([0.9, 0.4, 0.35, 0.1, 0.8, 0.6])


def test_roc_auc_counts_the_pairs_ranked_right() -> None:
    # 0.9 and 0.8 beat all three negatives, 0.4 beats two of them: 8 of 9 pairs
    assert roc_auc(LABELS, SCORES) == pytest.approx(8 / 9)
    assert roc_auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5), "a tie counts half"
    assert roc_auc([1, 1], [0.2, 0.3]) is None, "undefined with one class"


def test_average_precision_is_the_mean_precision_at_each_fracture() -> None:
    # precision at the three positives: 1/1, 2/2, 3/4
    assert average_precision(LABELS, SCORES) == pytest.approx((1 + 1 + 0.75) / 3)


def test_the_confusion_matrix_and_its_rates_at_a_threshold() -> None:
    metrics = binary_metrics(LABELS, SCORES, threshold=0.5)
    assert metrics["confusion"] == {"tp": 2, "fn": 1, "fp": 1, "tn": 2}
    for key in ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "precision", "f1"):
        assert metrics[key] == pytest.approx(2 / 3), key
    assert metrics["roc_auc"] == pytest.approx(8 / 9)
    perfect = binary_metrics([0, 0, 1], [0.1, 0.2, 0.9], threshold=0.5)
    assert perfect["accuracy"] == perfect["f1"] == 1.0 and perfect["confusion"]["fp"] == 0


def test_the_threshold_maximises_youden_j_between_two_scores() -> None:
    # J is 2/3 at 0.8 (first) and at 0.4; the cut goes midway between 0.8 and the next score, 0.6
    assert choose_threshold(LABELS, SCORES) == pytest.approx(0.7)
    assert choose_threshold([1, 1], [0.2, 0.9]) == 0.5


def test_the_roc_curve_runs_from_nothing_to_everything_positive() -> None:
    fpr, tpr, _ = roc_curve(LABELS, SCORES)
    assert (fpr[0], tpr[0]) == (0, 0) and (fpr[-1], tpr[-1]) == (1, 1)
    assert np.trapezoid(tpr, fpr) == pytest.approx(8 / 9)
