"""The test split's ROC curve and confusion matrix as PNG files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # workers have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from workers.gpu.classifier.metrics import roc_curve  # noqa: E402


def roc_png(path: Path, labels: np.ndarray, scores: np.ndarray, auc: float | None, title: str) -> Path:
    fpr, tpr, _ = roc_curve(labels, scores)
    figure, axes = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    axes.plot(fpr, tpr, lw=2, label=f"ROC AUC {auc:.3f}" if auc is not None else "ROC")
    axes.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    axes.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1.01))
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


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
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
