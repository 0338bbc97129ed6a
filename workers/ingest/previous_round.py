"""`dispatch ingest --previous rN`: a release that grows in rounds (annotate, train, pre-annotate, correct,
retrain).

- Sides kept: a picture of the last round's dataset (found by its exact or perceptual hash in that dataset's
  manifest, else by its file's stem, which pre-annotation keeps: a picture turned upright for the tool is
  re-encoded, and a small one's hash can move past the threshold) stays on its side, and its whole split
  unit (its duplicates, its --groups patient) with it; a unit with a member once in test goes to test. So no
  test case drifts into training between rounds. Only the new units are split, at --test-fraction.
- Corrections measured: where rN is a `dispatch predict --annotations` run, each picture it pre-annotated
  (matched by name: the file's stem, without the 8-hex prefix Label Studio gives an upload) is compared with
  its corrected masks: the intersection over union of the fracture pixels at full size, 1.0 where the
  annotator accepted the prediction as it was (or both are empty).
"""

from __future__ import annotations

import csv
import re
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from shared.contract import PreviousRound
from workers.files import replacing
from workers.ingest.duplicates import known_matches
from workers.ingest.masks import label_mask
from workers.ingest.records import PlanItem
from workers.ingest.split import TEST, TRAIN

CORRECTIONS_FILE = "corrections.csv"
EARLIER_MANIFEST = "previous_manifest.csv"  # staging: the last round's manifest, read before it is replaced
UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")  # Label Studio names an uploaded file <8 hex>-<its name>
UNCHANGED_IOU = 0.999  # at or above: the annotator accepted the prediction


def earlier_sides(manifest: Path, items: list[PlanItem], hashes: dict[str, tuple[str, str]]) -> dict[str, str]:
    """case id -> train | test, for each picture that was a case of the last round's dataset."""
    with manifest.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("split") in (TRAIN, TEST) and row.get("exact_hash")]
    by_exact = {row["exact_hash"]: row["split"] for row in rows}
    stems = Counter(_stem(row["source_file"]) for row in rows)
    by_stem = {_stem(row["source_file"]): row["split"] for row in rows if stems[_stem(row["source_file"])] == 1}
    perceptual = [hashes[item.file_name][1] for item in items]
    nearest = known_matches(perceptual, [row["perceptual_hash"] for row in rows])
    sides = {}
    for item, match in zip(items, nearest, strict=True):
        side = by_exact.get(hashes[item.file_name][0]) or (rows[match]["split"] if match is not None else None)
        side = side or by_stem.get(_stem(item.file_name))
        if side:
            sides[item.case_id] = side
    return sides


@dataclass(frozen=True)
class Correction:
    case_id: str
    file_name: str
    predicted_pixels: int
    corrected_pixels: int
    iou: float


def corrections(previous: PreviousRound, items: list[PlanItem], sizes: dict[str, tuple[int, int]]) -> list[Correction]:
    """Each picture the predict run pre-annotated, against its corrected masks; `sizes`: file name -> its full
    (width, height) after EXIF orientation."""
    assert previous.predictions is not None
    predicted = _predicted_masks(Path(previous.predictions))
    found = []
    for item in items:
        files = predicted.get(_stem(item.file_name))
        if files is None:
            continue
        width, height = item.coco_size or sizes[item.file_name]
        corrected = label_mask(item.segments, width, height, width, height)[0] > 0 if item.segments else None
        prediction = _union(files, (width, height))
        if corrected is None:
            corrected = np.zeros_like(prediction)
        union = int(np.logical_or(prediction, corrected).sum())
        iou = float(np.logical_and(prediction, corrected).sum() / union) if union else 1.0
        found.append(Correction(item.case_id, item.file_name, int(prediction.sum()), int(corrected.sum()), iou))
    return found


def summary(found: list[Correction], run: int) -> dict[str, Any]:
    """The run's figures: what a PI asks of the model's help."""
    ious = [c.iou for c in found]
    return {
        "previous": f"r{run}",
        "pre_annotated": len(found),
        "accepted_unchanged": sum(1 for iou in ious if iou >= UNCHANGED_IOU),
        "mean_iou": round(statistics.fmean(ious), 4) if ious else None,
        "median_iou": round(statistics.median(ious), 4) if ious else None,
    }


def write_corrections(path: Path, found: list[Correction], split: dict[str, str]) -> None:
    with replacing(path, text=True) as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "file_name", "predicted_pixels", "corrected_pixels", "iou", "split"])
        for c in sorted(found, key=lambda c: c.case_id):
            writer.writerow([c.case_id, c.file_name, c.predicted_pixels, c.corrected_pixels, f"{c.iou:.4f}",
                             split.get(c.case_id, "")])  # fmt: skip


def _stem(file_name: str) -> str:
    return UPLOAD_PREFIX.sub("", Path(file_name).name).split(".")[0]


def _predicted_masks(folder: Path) -> dict[str, list[Path]]:
    """name -> its mask files, from the predict run's predictions.csv."""
    with (folder / "predictions.csv").open(newline="") as handle:
        return {row["name"]: [folder / name for name in row["mask"].split(";")] for row in csv.DictReader(handle)}


def _union(files: list[Path], size: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(size[::-1], bool)
    for path in files:
        with Image.open(path) as picture:
            layer = np.asarray(picture.convert("L")) > 0
        if layer.shape != mask.shape:  # the picture was re-encoded at another size: compare at this one
            layer = np.asarray(Image.fromarray(layer).resize(size, Image.Resampling.NEAREST))
        mask |= layer
    return mask
