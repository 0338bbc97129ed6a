"""An external cohort read as the ingest reads a release (workers/ingest: FracAtlas, any COCO export, DICOM
under pseudonyms, an export zip unpacked under the caps), each picture brought to the model's working size
by the ingest's own resize, its reference masks drawn in the model's label numbers, and its two hashes
taken as the ingest takes them.

A cohort category is scored as the model category of the same name, or the one `--categories` maps it
onto; any other is refused by name. A picture that cannot be read is left out and named, as is one whose
COCO size does not fit it: the cohort is scored on what it holds, and the run says what it did not.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.contract import EvaluateRequest
from shared.errors import InputError
from workers.imaging.pictures import load_picture
from workers.ingest.archive import is_archive, unpack
from workers.ingest.coco import InputCaps
from workers.ingest.duplicates import exact_hash, perceptual_hash
from workers.ingest.masks import label_mask
from workers.ingest.reader import read_release
from workers.ingest.release import ImageEntry

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class CohortCase:
    name: str  # nnU-Net's case id of the picture: its file name made safe, or a DICOM picture's pseudonym
    file_name: str  # as the annotation file names it: the key of a --strata CSV
    fractured: bool  # the image-level label
    segmented: bool  # a case of the segmentation figures: a negative, or a positive with masks
    group: str  # the resampling unit: --groups', a DICOM picture's patient pseudonym, else the picture
    strata: dict[str, str]  # --by column -> this picture's value
    categories: tuple[str, ...]  # the model categories its masks hold
    pixels: np.ndarray  # (rows, columns) uint8 at the working size
    reference: np.ndarray  # the label map at the working size, in the model's numbers (zeros: no mask)
    exact_hash: str
    perceptual_hash: str


@dataclass
class Cohort:
    described: str
    cases: list[CohortCase]
    warnings: list[str]
    unreadable: dict[str, str] = field(default_factory=dict)  # picture -> why it was left out


@dataclass(frozen=True)
class Geometry:
    """What the model's pictures were: the classifier's working square and the ingest's squash."""

    working_size: int
    square: bool


def read_cohort(
    request: EvaluateRequest,
    model_labels: list[str],
    geometry: Geometry,
    caps: InputCaps,
    key: bytes,
    work: Path,
    progress: Progress,
) -> Cohort:
    source = Path(request.cohort.source)
    if is_archive(source):
        source = unpack(source, work / "unpacked", caps)
    release = read_release(source, request.cohort, caps, key)
    numbers = model_numbers(release.labels, request.category_map, model_labels)
    strata = _strata_table(request)
    cohort = Cohort(release.described, [], list(release.warnings))
    for index, image in enumerate(release.images):
        progress(index, len(release.images), image.shown)
        try:
            cohort.cases.append(_case(image, numbers, model_labels, geometry, caps, strata, request.by))
        except InputError as error:
            cohort.unreadable[image.shown] = str(error)
    if not cohort.cases:
        raise InputError(f"no picture of {source} could be read: " + "; ".join(cohort.unreadable.values()))
    return cohort


def model_numbers(cohort_labels: list[str], mapping: dict[str, str], model_labels: list[str]) -> np.ndarray:
    """A lookup from the cohort's label numbers (1..K, release.labels' order) to the model's."""
    unknown = sorted(set(mapping) - set(cohort_labels))
    if unknown:
        raise InputError(
            f"--categories maps {unknown[0]!r}, which is not among the cohort's categories ({', '.join(cohort_labels)})"
        )
    lookup = np.zeros(len(cohort_labels) + 1, np.uint8)
    for number, name in enumerate(cohort_labels, start=1):
        target = mapping.get(name, name)
        if target not in model_labels:
            raise InputError(
                f"the cohort's category {name!r} is not one the model knows ({', '.join(model_labels)}); map it "
                f"with --categories {name}={model_labels[0]}, or leave it out with --categories"
            )
        lookup[number] = model_labels.index(target) + 1
    return lookup


def _case(
    image: ImageEntry,
    numbers: np.ndarray,
    model_labels: list[str],
    geometry: Geometry,
    caps: InputCaps,
    strata: dict[str, dict[str, str]],
    by: list[str],
) -> CohortCase:
    picture = load_picture(image.path, geometry.working_size, caps.pixels_per_picture, square=geometry.square)
    rows, columns = picture.pixels.shape
    reference = np.zeros((rows, columns), np.uint8)
    if image.segments:
        assert image.coco_size is not None  # a picture with segments came with its COCO entry's size
        if tuple(picture.oriented_size) != tuple(image.coco_size):
            raise InputError(
                f"{image.shown} is {picture.oriented_size[0]}x{picture.oriented_size[1]} after its EXIF orientation, "
                f"but its COCO entry says {image.coco_size[0]}x{image.coco_size[1]}; its masks would not fit it"
            )
        drawn, _contested = label_mask(image.segments, *image.coco_size, columns, rows)
        reference = numbers[drawn]
    held = sorted({int(value) for value in np.unique(reference) if value})
    values = {"region": image.region, "category": ";".join(model_labels[n - 1] for n in held) or "none"}
    values.update(strata.get(image.file_name, {}))
    return CohortCase(
        name=image.case_id,
        file_name=image.file_name,
        fractured=image.fractured,
        segmented=bool(image.segments) or not (image.fractured or image.box_only),
        group=image.group or image.case_id,
        strata={name: values.get(name, "unknown") for name in by},
        categories=tuple(model_labels[n - 1] for n in held),
        pixels=picture.pixels,
        reference=reference,
        exact_hash=exact_hash(picture.pixels),
        perceptual_hash=perceptual_hash(picture.pixels),
    )


def _strata_table(request: EvaluateRequest) -> dict[str, dict[str, str]]:
    """--strata: file_name -> {column: value} for the --by columns it holds."""
    if request.strata is None:
        return {}
    path = Path(request.strata)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            wanted = [name for name in request.by if name not in ("category", "region")]
            missing = [name for name in ["file_name", *wanted] if name not in columns]
            if missing:
                raise InputError(f"{path} has no column {missing[0]!r} (its columns: {', '.join(columns)})")
            return {row["file_name"]: {name: row[name] or "unknown" for name in wanted} for row in reader}
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"cannot read --strata {path} ({error}); give a CSV with file_name and your columns") from None
