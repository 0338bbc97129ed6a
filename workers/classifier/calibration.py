"""How far a classifier's fracture probabilities can be taken at their word: the calibration figures
TRIPOD+AI asks of an external validation, in plain numpy.

- Brier score: the mean squared difference between the probability and the label (0 is perfect).
- Expected calibration error: the probabilities in BINS equal-width bins; per bin, the gap between the mean
  probability and the share of fractured images, weighted by the bin's share of images.
- Calibration slope: b of the logistic regression label ~ a + b * logit(probability). 1 is ideal; below 1
  the probabilities are too extreme (overfitting, or a cohort unlike the training data), above 1 too timid.
- The reliability diagram's bins: each bin's mean probability against its share of fractured images.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from workers.bootstrap import interval

BINS = 10
CLIP = 1e-6  # probabilities of exactly 0 or 1 would have an infinite logit
NEWTON_STEPS = 50


def brier(labels: np.ndarray, scores: np.ndarray) -> float | None:
    labels, scores = np.asarray(labels, dtype=float), np.asarray(scores, dtype=float)
    return float(np.mean((scores - labels) ** 2)) if len(labels) else None


def reliability_bins(labels: np.ndarray, scores: np.ndarray, bins: int = BINS) -> list[dict[str, float]]:
    """The non-empty bins: their edges, images, mean probability and share of fractured images."""
    labels, scores = np.asarray(labels, dtype=float), np.asarray(scores, dtype=float)
    index = np.minimum((scores * bins).astype(int), bins - 1)
    rows = []
    for number in range(bins):
        members = index == number
        if members.any():
            rows.append(
                {
                    "low": number / bins,
                    "high": (number + 1) / bins,
                    "images": int(members.sum()),
                    "mean_probability": float(scores[members].mean()),
                    "fractured_share": float(labels[members].mean()),
                }
            )
    return rows


def expected_calibration_error(labels: np.ndarray, scores: np.ndarray, bins: int = BINS) -> float | None:
    if not len(labels):
        return None
    rows = reliability_bins(labels, scores, bins)
    return float(sum(r["images"] * abs(r["mean_probability"] - r["fractured_share"]) for r in rows) / len(labels))


def calibration_slope(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """b of label ~ a + b * logit(score), by Newton's method; None with one class only or without a finite fit
    (the classes separated perfectly)."""
    labels = np.asarray(labels, dtype=float)
    if labels.min(initial=1) == labels.max(initial=0):
        return None
    clipped = np.clip(np.asarray(scores, dtype=float), CLIP, 1 - CLIP)
    design = np.column_stack([np.ones(len(labels)), np.log(clipped / (1 - clipped))])
    weights = np.zeros(2)
    for _ in range(NEWTON_STEPS):
        fitted = 1 / (1 + np.exp(-(design @ weights)))
        hessian = design.T @ (design * (fitted * (1 - fitted))[:, None])
        try:
            step = np.linalg.solve(hessian, design.T @ (labels - fitted))
        except np.linalg.LinAlgError:
            return None
        weights += step
        if np.abs(step).max() < 1e-10:
            return float(weights[1])
    return None  # no convergence: the likelihood keeps rising, as it does for separated classes


def calibration_figures(labels: np.ndarray, scores: np.ndarray, groups: list[str] | None = None) -> dict[str, Any]:
    """The three figures, the diagram's bins, and each figure's 95% bootstrap interval."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=float)
    statistics = {"brier": brier, "ece": expected_calibration_error, "calibration_slope": calibration_slope}
    strata = None if groups is not None else labels.astype(int)
    return {
        **{name: statistic(labels, scores) for name, statistic in statistics.items()},
        "reliability": reliability_bins(labels, scores),
        "intervals": {
            name: interval(statistic, (labels, scores), strata, groups=groups) for name, statistic in statistics.items()
        },
    }
