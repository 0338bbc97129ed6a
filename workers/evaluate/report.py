"""An external validation as a person reads it: the table of its figures beside the internal test split's
(`dispatch show`, docs/results.md's format), the ROC curve and the reliability diagram."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from shared.results_table import machine, markdown_section, with_interval
from workers.classifier.plots import reliability_png, roc_png
from workers.evaluate.external import Evaluated

CLASSIFIER_ROWS = (
    ("ROC AUC", "roc_auc"),
    ("PR AUC", "pr_auc"),
    ("balanced accuracy", "balanced_accuracy"),
    ("sensitivity", "sensitivity"),
    ("specificity", "specificity"),
    ("sensitivity at 90% specificity (validation's cut)", "sensitivity_at_90_specificity"),
    ("Brier score", "brier"),
    ("expected calibration error", "ece"),
    ("calibration slope", "calibration_slope"),
)
SEGMENTATION_ROWS = (
    ("Dice on fractured cases", "dice_fractured"),
    ("non-fractured cases with a false positive", "false_positive_share"),
    ("mean Dice over the categories", "dice_category_mean"),
)


def _cell(figures: dict[str, Any] | None, key: str) -> str:
    if not figures:
        return "-"
    return with_interval(figures.get(key), (figures.get("intervals") or {}).get(key))


def _category_cell(figures: dict[str, Any] | None, name: str) -> str:
    if not figures:
        return "-"
    intervals = (figures.get("intervals") or {}).get("dice_per_category") or {}
    return with_interval((figures.get("dice_per_category") or {}).get(name), intervals.get(name))


def table(evaluated: Evaluated, internal: dict[str, Any]) -> dict[str, Any]:
    """{header, rows}: each figure, the internal test split's where it has one, and the cohort's."""
    classifier, segmentation = evaluated.figures["classifier"], evaluated.figures["segmentation"]
    internal_classifier, internal_segmentation = internal.get("classifier"), internal.get("segmentation")
    rows = [["pictures scored (fractured)", "-", f"{classifier['images']} ({classifier['fractured']})"]]
    rows.append(["left out: pictures the model's dataset holds", "-", str(len(evaluated.left_out))])
    rows += [[label, _cell(internal_classifier, key), _cell(classifier, key)] for label, key in CLASSIFIER_ROWS]
    rows.append(
        ["threshold (validation's)", f"{classifier['threshold']:.3f}", f"{classifier['threshold']:.3f} (the same)"]
    )
    if segmentation is not None:
        rows += [
            [label, _cell(internal_segmentation, key), _cell(segmentation, key)] for label, key in SEGMENTATION_ROWS
        ]
        rows += [
            [f"Dice on {name}", _category_cell(internal_segmentation, name), _category_cell(segmentation, name)]
            for name in segmentation.get("dice_per_category") or {}
        ]
    return {"header": ["figure [95% CI]", "internal test split", "external cohort"], "rows": rows}


def plots(evaluated: Evaluated, out: Path, title: str) -> dict[str, str]:
    classifier = evaluated.figures["classifier"]
    labels = np.array([s.fractured for s in evaluated.scored], dtype=int)
    scores = np.array([s.probability for s in evaluated.scored], dtype=float)
    return {
        "roc_png": str(roc_png(out / "roc.png", labels, scores, classifier["roc_auc"], title)),
        "reliability_png": str(
            reliability_png(out / "reliability.png", classifier["reliability"], classifier["ece"], title)
        ),
    }


def results_section(what: str, command: str, content: dict[str, Any]) -> str:
    """The table as docs/results.md holds its figures."""
    return markdown_section(what, machine(), command, content["header"], content["rows"])
