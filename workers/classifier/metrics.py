"""Binary classification metrics from scores, in plain numpy (checked against hand-worked cases in the tests).

A score is the predicted probability of a fracture; label 1 is fractured.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from workers.bootstrap import interval

TARGET_SPECIFICITY = 0.9  # the operating point a screening reader asks for: sensitivity at 90% specificity


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=float)
    sorted_values = values[order]
    start = 0
    while start < len(values):
        stop = start
        while stop + 1 < len(values) and sorted_values[stop + 1] == sorted_values[start]:
            stop += 1
        ranks[order[start : stop + 1]] = (start + stop) / 2 + 1
        start = stop + 1
    return ranks


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """The probability that a fractured image scores above a non-fractured one (Mann-Whitney U)."""
    labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, dtype=float)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return None
    rank_sum = _ranks(scores)[labels].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true positive rates at each distinct score taken as threshold (score >= t is positive)."""
    labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, dtype=float)
    thresholds = np.r_[np.inf, np.unique(scores)[::-1]]
    predicted = scores[None, :] >= thresholds[:, None]
    tpr = (predicted & labels).sum(1) / max(int(labels.sum()), 1)
    fpr = (predicted & ~labels).sum(1) / max(int((~labels).sum()), 1)
    return fpr, tpr, thresholds


def precision_recall_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at each distinct score taken as threshold, highest first (needs a positive)."""
    labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, dtype=float)
    thresholds = np.unique(scores)[::-1]
    predicted = scores[None, :] >= thresholds[:, None]
    true_positives = (predicted & labels).sum(1)
    return true_positives / predicted.sum(1), true_positives / labels.sum()


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """PR AUC as average precision: the precision at each fractured image's rank, averaged (ties grouped)."""
    if not np.asarray(labels).astype(bool).any():
        return None
    precision, recall = precision_recall_curve(labels, scores)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def choose_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The cut that maximises Youden's J (sensitivity + specificity - 1) on these scores, placed midway
    between the lowest score it calls positive and the next lower one; 0.5 where J is undefined."""
    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        return 0.5
    fpr, tpr, thresholds = roc_curve(labels, scores)
    best = int(np.argmax(np.round(tpr - fpr, 9)))  # the first (highest) threshold of the best J
    if best == 0:  # J is best with nothing positive
        return float(thresholds[1]) + 1e-6
    lower = thresholds[best + 1] if best + 1 < len(thresholds) else 0.0
    return float((thresholds[best] + lower) / 2)


def threshold_for_specificity(labels: np.ndarray, scores: np.ndarray, target: float = TARGET_SPECIFICITY) -> float:
    """The lowest cut at which at least `target` of these non-fractured images score below it (chosen on the
    validation split and applied to the test split: the test split never picks its own operating point)."""
    labels = np.asarray(labels).astype(bool)
    negatives = np.sort(np.asarray(scores, dtype=float)[~labels])
    if not len(negatives):
        return 0.5
    needed = int(np.ceil(target * len(negatives) - 1e-9))
    return float(np.nextafter(negatives[needed - 1], np.inf)) if needed else float(negatives[0])


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def confusion(labels: np.ndarray, predicted: np.ndarray) -> dict[str, int]:
    labels, predicted = np.asarray(labels).astype(bool), np.asarray(predicted).astype(bool)
    return {
        "tp": int((labels & predicted).sum()),
        "fn": int((labels & ~predicted).sum()),
        "fp": int((~labels & predicted).sum()),
        "tn": int((~labels & ~predicted).sum()),
    }


def _sensitivity(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float | None:
    labels = labels.astype(bool)
    return _ratio(int((scores[labels] >= threshold).sum()), int(labels.sum()))


def _specificity(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float | None:
    labels = labels.astype(bool)
    return _ratio(int((scores[~labels] < threshold).sum()), int((~labels).sum()))


def _balanced_accuracy(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float | None:
    known = [
        v for v in (_sensitivity(labels, scores, threshold), _specificity(labels, scores, threshold)) if v is not None
    ]
    return sum(known) / len(known) if known else None


def binary_metrics(
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    specificity_threshold: float | None = None,
    with_intervals: bool = False,
    groups: list[str] | None = None,
) -> dict[str, Any]:
    """Every metric of the report at `threshold` (score >= threshold is fractured). `specificity_threshold`:
    the validation split's cut for 90% specificity, at which the sensitivity is reported too;
    `with_intervals`: each headline metric's 95% bootstrap interval, under "intervals" (drawing whole
    `groups`, a patient or study per image, where given)."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=float)
    matrix = confusion(labels, scores >= threshold)
    tp, fn, fp, tn = matrix["tp"], matrix["fn"], matrix["fp"], matrix["tn"]
    sensitivity, specificity = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    precision = _ratio(tp, tp + fp)
    known = [value for value in (sensitivity, specificity) if value is not None]
    metrics = {
        "images": len(scores),
        "threshold": threshold,
        "accuracy": _ratio(tp + tn, len(scores)),
        "balanced_accuracy": sum(known) / len(known) if known else None,
        "sensitivity": sensitivity,
        "specificity": specificity,
        "precision": precision,
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "roc_auc": roc_auc(labels, scores),
        "pr_auc": average_precision(labels, scores),
        "confusion": matrix,
    }
    statistics = {
        "roc_auc": roc_auc,
        "pr_auc": average_precision,
        "balanced_accuracy": lambda y, s: _balanced_accuracy(y, s, threshold),
        "sensitivity": lambda y, s: _sensitivity(y, s, threshold),
        "specificity": lambda y, s: _specificity(y, s, threshold),
    }
    if specificity_threshold is not None:
        metrics["threshold_90_specificity"] = specificity_threshold
        metrics["sensitivity_at_90_specificity"] = _sensitivity(labels, scores, specificity_threshold)
        metrics["specificity_at_90_threshold"] = _specificity(labels, scores, specificity_threshold)
        statistics["sensitivity_at_90_specificity"] = lambda y, s: _sensitivity(y, s, specificity_threshold)
    if with_intervals:
        strata = labels.astype(int)
        metrics["intervals"] = {
            name: interval(f, (labels, scores), strata, groups=groups) for name, f in statistics.items()
        }
    return metrics
