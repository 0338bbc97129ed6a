"""The test split's ROC and precision-recall curves, its confusion matrix, and an external cohort's reliability
diagram, as PNG files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # workers have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from workers.classifier.metrics import precision_recall_curve, roc_curve  # noqa: E402


def _saved(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def roc_png(path: Path, labels: np.ndarray, scores: np.ndarray, auc: float | None, title: str) -> Path:
    fpr, tpr, _ = roc_curve(labels, scores)
    figure, axes = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    axes.plot(fpr, tpr, lw=2, label=f"ROC AUC {auc:.3f}" if auc is not None else "ROC")
    axes.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    axes.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1.01))
    axes.legend(loc="lower right")
    return _saved(figure, path)


def pr_png(path: Path, labels: np.ndarray, scores: np.ndarray, average_precision: float | None, title: str) -> Path:
    figure, axes = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    if np.asarray(labels).astype(bool).any():
        precision, recall = precision_recall_curve(labels, scores)
        label = f"average precision {average_precision:.3f}" if average_precision is not None else "PR"
        axes.step(np.r_[0.0, recall], np.r_[precision[0], precision], where="post", lw=2, label=label)
        axes.axhline(float(np.mean(labels)), ls="--", c="grey", lw=1, label="prevalence")
        axes.legend(loc="lower left")
    axes.set(xlabel="recall (sensitivity)", ylabel="precision", title=title, xlim=(0, 1), ylim=(0, 1.01))
    return _saved(figure, path)


def confusion_png(path: Path, matrix: dict[str, int], threshold: float, title: str) -> Path:
    cells = np.array([[matrix["tn"], matrix["fp"]], [matrix["fn"], matrix["tp"]]])
    figure, axes = plt.subplots(figsize=(4.5, 4), dpi=120)
    axes.imshow(cells, cmap="Blues")
    for (row, column), value in np.ndenumerate(cells):
        colour = "white" if value > cells.max() / 2 else "black"
        axes.text(column, row, str(value), ha="center", va="center", fontsize=14, color=colour)
    axes.set_xticks([0, 1], ["no fracture", "fracture"])
    axes.set_yticks([0, 1], ["no fracture", "fracture"])
    axes.set(xlabel=f"predicted (threshold {threshold:.3f})", ylabel="true", title=title)
    return _saved(figure, path)


def reliability_png(path: Path, bins: list[dict[str, float]], ece: float | None, title: str) -> Path:
    """The reliability diagram: each bin's share of fractured images against its mean probability, the
    marker's area by the bin's images; the diagonal is perfect calibration."""
    figure, axes = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    axes.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfectly calibrated")
    if bins:
        mean = [b["mean_probability"] for b in bins]
        share = [b["fractured_share"] for b in bins]
        sizes = np.array([b["images"] for b in bins], dtype=float)
        axes.plot(mean, share, lw=1.5, c="tab:blue")
        label = f"bins (ECE {ece:.3f})" if ece is not None else "bins"
        axes.scatter(mean, share, s=20 + 180 * sizes / sizes.max(), c="tab:blue", zorder=3, label=label)
    axes.set(xlabel="mean predicted probability", ylabel="share fractured", title=title, xlim=(0, 1), ylim=(0, 1.01))
    axes.legend(loc="lower right")
    return _saved(figure, path)
