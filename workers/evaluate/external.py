"""`dispatch evaluate`: an external cohort through a trained model, scored honestly.

1. The cohort is read as a release (cohort.py) at the model's working size.
2. Its pictures that are the same picture as one the model's dataset holds (the training, validation and
   internal test pictures alike: the ingest's two hashes, exact or near) are named and left out.
3. The rest go through the same ensemble and classifier as `dispatch predict`, in batches (nnU-Net's
   per-category probabilities of a whole cohort would not fit in memory).
4. nnU-Net scores the masks (`nnUNetv2_evaluate_simple`; its summary.json is kept), figures.py the rest, at
   the thresholds the classifier's validation split chose.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.bundles import HASH_COLUMNS
from shared.contract import EvaluateRequest, Experiment
from shared.errors import InputError
from shared.settings import Settings
from workers.child import ToolRun
from workers.classifier.apply import fracture_scores
from workers.classifier.model import Classifier
from workers.evaluate.cohort import CohortCase, Geometry, read_cohort
from workers.evaluate.figures import Scored, Thresholds, by_strata, figures
from workers.ingest.coco import InputCaps
from workers.ingest.duplicates import seen_before
from workers.nnunet.commands import environment, run_tool, tool
from workers.nnunet.ensemble import predict_probabilities
from workers.nnunet.nifti import write_case
from workers.nnunet.segmentation_report import SUFFIX, case_figures

BATCH = 128  # pictures per nnUNetv2_predict: their per-category probabilities are held until scored


@dataclass(frozen=True)
class Model:
    """What scores the cohort: the folds, the classifier and its thresholds, and what the model has seen."""

    experiment: Experiment
    folds: list[int]
    classifier: Classifier
    thresholds: Thresholds
    labels: dict[str, int]  # dataset.json's, background included
    seen: Path  # a CSV of the model's dataset's pictures as exact_hash, perceptual_hash


@dataclass(frozen=True)
class Evaluated:
    figures: dict[str, Any]
    strata: dict[str, Any]
    scored: list[Scored]
    left_out: list[str]  # the cohort's pictures the model had seen
    unreadable: dict[str, str]
    described: str
    warnings: list[str]
    summary: Path  # nnU-Net's summary.json of the masks


def evaluate_cohort(
    settings: Settings,
    request: EvaluateRequest,
    model: Model,
    key: bytes,
    work: Path,
    out: Path,
    progress: Callable[[int, int, str], None],
    run: ToolRun,
) -> Evaluated:
    names = [name for name, value in sorted(model.labels.items(), key=lambda item: item[1]) if value]
    geometry = Geometry(model.classifier.working_size, model.classifier.square)
    cohort = read_cohort(request, names, geometry, InputCaps.of(settings), key, work, progress)
    cases, left_out = _unseen(cohort.cases, model.seen)
    if not cases:
        raise InputError(
            f"every readable picture of {request.cohort.source} is one the model's dataset holds; an external "
            "figure needs pictures it has not seen"
        )
    reference, predicted = work / "reference", work / "predicted"
    reference.mkdir()
    predicted.mkdir()
    scores: dict[str, float] = {}
    for start, batch in _batches(cases):
        progress(start, len(cases), f"predicting pictures {start + 1}-{start + len(batch)} of {len(cases)}")
        maps = predict_probabilities(
            settings,
            model.experiment,
            model.folds,
            ((case.name, case.pixels) for case in batch),
            work / "ensemble",
            run,
            segmentations=True,
        )
        batch_scores = fracture_scores(
            model.classifier, [case.pixels for case in batch], [maps[case.name].fracture for case in batch]
        )
        for case, score in zip(batch, batch_scores, strict=True):
            scores[case.name] = float(score)
            if case.segmented:
                segmentation = maps[case.name].labels
                assert segmentation is not None  # asked with segmentations=True
                write_case(reference / f"{case.name}{SUFFIX}", case.reference)
                write_case(predicted / f"{case.name}{SUFFIX}", segmentation.astype(np.uint8))
    summary = out / "summary.json"
    segmentation_cases = _nnunet_scores(settings, reference, predicted, model.labels, summary, run)
    scored = [
        Scored(
            case.name,
            case.fractured,
            scores[case.name],
            case.group,
            case.strata,
            case.categories,
            segmentation_cases.get(case.name),
        )
        for case in cases
    ]
    grouped = len({case.group for case in cases}) < len(cases)  # a group holds two pictures: draw groups
    return Evaluated(
        figures=figures(scored, model.thresholds, grouped),
        strata=by_strata(scored, request.by, model.thresholds, grouped),
        scored=scored,
        left_out=left_out,
        unreadable=cohort.unreadable,
        described=cohort.described,
        warnings=cohort.warnings,
        summary=summary,
    )


def _unseen(cases: list[CohortCase], seen: Path) -> tuple[list[CohortCase], list[str]]:
    """The cases the model has not seen, and the names of those it has."""
    with seen.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and any(column not in rows[0] for column in HASH_COLUMNS):
        raise InputError(
            f"{seen} has no picture hashes: its dataset was ingested before the manifest kept them; ingest it "
            "again with the same options, so that the cohort's copies of its pictures can be left out"
        )
    known_exact = {row["exact_hash"] for row in rows}
    known_perceptual = [row["perceptual_hash"] for row in rows]
    flags = seen_before(
        [case.exact_hash for case in cases], [case.perceptual_hash for case in cases], known_exact, known_perceptual
    )
    kept = [case for case, flag in zip(cases, flags, strict=True) if not flag]
    return kept, [case.name for case, flag in zip(cases, flags, strict=True) if flag]


def _batches(cases: list[CohortCase]) -> Iterator[tuple[int, list[CohortCase]]]:
    for start in range(0, len(cases), BATCH):
        yield start, cases[start : start + BATCH]


def _nnunet_scores(
    settings: Settings, reference: Path, predicted: Path, labels: dict[str, int], summary: Path, run: ToolRun
) -> dict[str, dict[str, Any]]:
    """nnU-Net's own evaluation of the masks (summary.json), and the per-case figures of segmentation_report."""
    if not any(reference.iterdir()):
        return {}
    numbers = [str(value) for value in sorted(labels.values()) if value]
    command = [tool("nnUNetv2_evaluate_simple"), str(reference), str(predicted), "-l", *numbers]
    run_tool("nnUNetv2_evaluate_simple", [*command, "-o", str(summary), "-np", "1"], environment(settings), run)
    return case_figures(reference, predicted, labels)


def write_cases(path: Path, evaluated: Evaluated, threshold: float, by: list[str]) -> None:
    """The per-case table: every figure of the run can be computed again from it."""
    categories = sorted({name for s in evaluated.scored for name in (s.segmentation or {}).get("per_label", {})})
    header = [
        "name", "group", "fractured", "fracture_probability", "predicted_label", "segmentation_case", "dice",
        "predicted_pixels", *(f"dice_{name}" for name in categories), "categories", *by,
    ]  # fmt: skip
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for s in evaluated.scored:
            seg = s.segmentation or {}
            per_label = seg.get("per_label", {})
            writer.writerow(
                [
                    s.name,
                    s.group,
                    int(s.fractured),
                    format(s.probability, ".17g"),  # every digit: ties the figures did not have are not made
                    "fracture" if s.probability >= threshold else "no fracture",
                    int(s.segmentation is not None),
                    _blank(seg.get("dice")),
                    seg.get("predicted_pixels", ""),
                    *(_blank(per_label.get(name)) for name in categories),
                    ";".join(s.categories),
                    *(s.strata[name] for name in by),
                ]
            )


def _blank(value: float | None) -> str:
    return "" if value is None else format(value, ".17g")
