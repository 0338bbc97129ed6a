"""An external cohort's figures from its per-case predictions: the classifier's discrimination at the
thresholds its validation split chose and its calibration, the segmentation's Dice per category on the
fractured cases and its false positives on the others, each with a 95% bootstrap interval that draws whole
groups (patients, studies) where the cohort has them, overall and per stratum.

A stratum of `category` holds the pictures whose masks hold that category and every picture without a
fracture (without the latter its specificity and ROC AUC would have nothing to stand on); any other
stratum (region, a --strata column) holds the pictures of that value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from workers.classifier.calibration import calibration_figures
from workers.classifier.metrics import binary_metrics
from workers.nnunet.segmentation_report import report


@dataclass(frozen=True)
class Thresholds:
    """Chosen on the internal validation split, never on the cohort."""

    operating: float  # the classifier's own (Youden's J on validation)
    specificity_90: float | None  # validation's cut for 90% specificity


@dataclass(frozen=True)
class Scored:
    """One picture as the model saw it."""

    name: str
    fractured: bool
    probability: float
    group: str
    strata: dict[str, str]
    categories: tuple[str, ...]
    segmentation: dict[str, Any] | None  # segmentation_report.case_figures' entry; None: not a segmentation case


def classifier_figures(scored: list[Scored], thresholds: Thresholds, grouped: bool) -> dict[str, Any]:
    labels = np.array([s.fractured for s in scored], dtype=int)
    scores = np.array([s.probability for s in scored], dtype=float)
    groups = [s.group for s in scored] if grouped else None
    figures = binary_metrics(
        labels, scores, thresholds.operating, thresholds.specificity_90, with_intervals=True, groups=groups
    )
    calibration = calibration_figures(labels, scores, groups)
    figures["intervals"].update(calibration.pop("intervals"))
    return {**figures, **calibration, "fractured": int(labels.sum())}


def segmentation_figures(scored: list[Scored], grouped: bool) -> dict[str, Any] | None:
    cases = {s.name: s.segmentation for s in scored if s.segmentation is not None}
    if not cases:
        return None
    groups = {s.name: s.group for s in scored} if grouped else None
    return report(cases, groups)


def figures(scored: list[Scored], thresholds: Thresholds, grouped: bool) -> dict[str, Any]:
    return {
        "classifier": classifier_figures(scored, thresholds, grouped),
        "segmentation": segmentation_figures(scored, grouped),
    }


def by_strata(scored: list[Scored], by: list[str], thresholds: Thresholds, grouped: bool) -> dict[str, Any]:
    """--by name -> stratum value -> its figures (and its pictures)."""
    strata: dict[str, Any] = {}
    for name in by:
        values = sorted({value for s in scored for value in _values(s, name)} - {"none"})
        strata[name] = {}
        for value in values:
            members = [s for s in scored if value in _values(s, name) or (name == "category" and not s.categories)]
            strata[name][value] = {"pictures": len(members), **figures(members, thresholds, grouped)}
    return strata


def _values(scored: Scored, name: str) -> set[str]:
    return set(scored.categories) if name == "category" else {scored.strata[name]}
