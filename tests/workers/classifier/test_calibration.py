"""The calibration figures of an external validation against scikit-learn and hand-worked cases, and the
bootstrap that draws whole patients."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss

from workers.bootstrap import group_draws, interval
from workers.classifier.calibration import (
    brier,
    calibration_figures,
    calibration_slope,
    expected_calibration_error,
    reliability_bins,
)


def cohort(seed: int = 0, n: int = 400, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from true probabilities, and those probabilities sharpened by 1 / temperature."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-logits))).astype(int)
    return labels, 1 / (1 + np.exp(-logits / temperature))


def test_brier_and_slope_agree_with_scikit_learn() -> None:
    labels, scores = cohort(temperature=0.5)  # too extreme: the slope is about 0.5
    assert brier(labels, scores) == pytest.approx(brier_score_loss(labels, scores))
    logit = np.log(scores / (1 - scores))[:, None]
    fitted = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(logit, labels)
    assert calibration_slope(labels, scores) == pytest.approx(fitted.coef_[0][0], abs=1e-5)
    assert 0.3 < calibration_slope(labels, scores) < 0.7
    well = cohort(seed=1, n=4000)
    assert calibration_slope(*well) == pytest.approx(1.0, abs=0.15)


def test_ece_and_the_reliability_bins_by_hand() -> None:
    labels = np.array([0, 0, 1, 1, 1])
    scores = np.array([0.05, 0.15, 0.15, 0.95, 0.91])
    bins = reliability_bins(labels, scores)
    assert [(b["low"], b["images"]) for b in bins] == [(0.0, 1), (0.1, 2), (0.9, 2)]
    assert bins[1]["mean_probability"] == pytest.approx(0.15) and bins[1]["fractured_share"] == 0.5
    # |0.05 - 0| * 1 + |0.15 - 0.5| * 2 + |0.93 - 1| * 2, over 5
    assert expected_calibration_error(labels, scores) == pytest.approx((0.05 + 0.7 + 0.14) / 5)


def test_separated_classes_have_no_slope_and_one_class_none() -> None:
    assert calibration_slope(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) is None
    assert calibration_slope(np.array([1, 1, 1]), np.array([0.2, 0.5, 0.9])) is None
    figures = calibration_figures(*cohort(n=60))
    assert set(figures["intervals"]) == {"brier", "ece", "calibration_slope"}
    assert figures["intervals"]["brier"]["low"] <= figures["brier"] <= figures["intervals"]["brier"]["high"]


def test_a_group_draw_takes_whole_groups_and_widens_the_interval() -> None:
    groups = [f"patient-{i // 4}" for i in range(40)]  # ten patients, four pictures each
    for draw in group_draws(groups, resamples=50):
        drawn = [groups[i] for i in draw]
        assert all(drawn.count(g) % 4 == 0 for g in set(drawn)), "every drawn patient with all four pictures"
    # Pictures of one patient alike: drawing pictures as if independent understates the spread.
    values = np.repeat(np.random.default_rng(3).normal(size=10), 4)
    by_picture = interval(lambda v: float(v.mean()), (values,))
    by_patient = interval(lambda v: float(v.mean()), (values,), groups=groups)
    assert by_patient["high"] - by_patient["low"] > 1.5 * (by_picture["high"] - by_picture["low"])
    assert interval(lambda v: float(v.mean()), (values[:4],), groups=groups[:4]) is None, "one group: no interval"
