"""A release (FracAtlas or any COCO export) -> nnU-Net v2 raw dataset + classification cache, in three steps
that workers share:

plan      unpack a zip, read and check the release, write plan.json and each chunk's items into a staging
          folder
convert   decode one chunk of pictures at their working size, hash them, write their NIfTI cases and their
          slice of the classification cache
assemble  group the duplicates, choose the cases and split them (case_selection.py), move each case to its
          side, write dataset.json, the manifest, the split and the cache, then rename both into place

Nothing appears under nnUNet_raw until the final rename, so a failed ingest leaves no half dataset.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.contract import IngestRequest
from shared.errors import InputError
from shared.layout import CACHE_GEOMETRY, CACHE_IMAGES, CACHE_LABELS, GROUPS_FILE, DataRoot, existing_datasets
from workers.files import replacing
from workers.imaging.geometry import letterbox
from workers.imaging.pictures import Picture, load_picture
from workers.imaging.pseudonyms import write_map
from workers.ingest.archive import is_archive, unpack
from workers.ingest.case_selection import Selection, select_cases
from workers.ingest.coco import DEFAULT_CAPS, InputCaps
from workers.ingest.duplicates import NEAR_BITS, exact_hash, perceptual_hash
from workers.ingest.fracatlas import REGIONS
from workers.ingest.masks import label_mask
from workers.ingest.previous_round import (
    CORRECTIONS_FILE,
    EARLIER_MANIFEST,
    corrections,
    earlier_sides,
    summary,
    write_corrections,
)
from workers.ingest.reader import read_release
from workers.ingest.records import Converted, PlanItem, StagedPlan
from workers.ingest.release import FRACATLAS_LAYOUT
from workers.ingest.split import TEST, TRAIN
from workers.nnunet.nifti import write_case
from workers.superres.upscale import Upscaler

PLAN_FILE = "plan.json"
MARKER = ".made-by-fracatlas-jobs"  # in every dataset the ingest writes: --overwrite replaces only these
DESCRIPTION = "FracAtlas fracture segmentation: COCO polygons scaled to the output size"
COCO_DESCRIPTION = "Segmentation from a COCO release: its masks scaled to the output size"
UNPACKED = "release"  # staging: an export zip, unpacked
PRIVATE_MAP = "(private map)"  # a DICOM picture's source_file in the manifest: DATA_ROOT/private/...
MIN_CHUNKS = 8
CLASSIFICATION = "classification"
CASES = "cases"  # staging: every picture's case, until the assemble job moves the chosen ones to their side
FOLDERS = {TRAIN: ("imagesTr", "labelsTr"), TEST: ("imagesTs", "labelsTs")}
ATTRIBUTE_COLUMNS = (*REGIONS, "hardware", "multiscan", "fracture_count", "frontal", "lateral", "oblique")

Progress = Callable[[int, int, str], None]


def _write_json(path: Path, content: Any, indent: int | None = 1) -> None:
    with replacing(path, text=True) as handle:
        handle.write(json.dumps(content, indent=indent))


def _check_ours_to_replace(dataset_id: int, raw_root: Path, derived_roots: tuple[Path, ...]) -> None:
    """--overwrite replaces only a dataset this project's ingest made (it carries MARKER), and what nnU-Net
    derived from it; a folder of another origin with the same id is left alone, and the ingest refused."""
    raw = existing_datasets(raw_root, dataset_id)
    foreign = [path for path in raw if not _made_here(path)]
    if not raw:
        foreign = [path for root in derived_roots for path in existing_datasets(root, dataset_id)]
    if foreign:
        raise InputError(
            f"{foreign[0]} was not made by this project's ingest (it has no {MARKER}); it is not replaced, "
            "even with --overwrite: move it away or choose another --dataset-id"
        )


def _made_here(dataset: Path) -> bool:
    """The marker, or (a dataset of a version before it) the dataset.json this ingest writes."""
    if (dataset / MARKER).is_file():
        return True
    try:
        return json.loads((dataset / "dataset.json").read_text()).get("description") == DESCRIPTION
    except (OSError, ValueError, AttributeError):
        return False


def plan(
    request: IngestRequest,
    release_folder: Path,
    staging: Path,
    raw_root: Path,
    chunk_size: int,
    caps: InputCaps = DEFAULT_CAPS,
    derived_roots: tuple[Path, ...] = (),
    key: bytes | None = None,
) -> dict[str, Any]:
    """Check the release and the target, and lay out the staging folder; returns plan metrics. `key`: the
    data root's pseudonym key (workers/imaging/pseudonyms.py), which DICOM pictures need."""
    existing = existing_datasets(raw_root, request.dataset_id)
    if existing and not request.overwrite:
        raise InputError(f"{existing[0]} exists already; pass --overwrite to replace it or choose another --dataset-id")
    _check_ours_to_replace(request.dataset_id, raw_root, derived_roots)
    shutil.rmtree(staging, ignore_errors=True)
    archive = release_folder if is_archive(release_folder) else None
    if archive is not None:
        release_folder = unpack(archive, staging / UNPACKED, caps)
    release = read_release(release_folder, request, caps, key)
    if request.split == "official" and not release.official_split:
        raise InputError(
            f"--split official needs 'Utilities/Fracture Split/{{train,valid,test}}.csv' in {release.root} "
            "(a FracAtlas release); restore them from the release or use the stratified split"
        )
    items = [PlanItem.of(image) for image in release.images]
    for folder in (*FOLDERS[TRAIN], *FOLDERS[TEST], CASES):
        (staging / request.dataset_name / folder).mkdir(parents=True)
    (staging / CLASSIFICATION).mkdir()
    if request.previous is not None and request.previous.manifest is not None:
        # Copied now: with the same --dataset-id, the assemble job replaces the dataset it lies in.
        shutil.copyfile(request.previous.manifest, staging / EARLIER_MANIFEST)
    working_size = request.working_size
    # The cache is one array file from the start: each convert job fills its own rows in place.
    np.lib.format.open_memmap(
        staging / CLASSIFICATION / CACHE_IMAGES,
        mode="w+",
        dtype=np.uint8,
        shape=(len(items), working_size, working_size),
    ).flush()
    # At least MIN_CHUNKS chunks, so that a small release still spreads over the workers.
    chunk_size = max(1, min(chunk_size, math.ceil(len(items) / MIN_CHUNKS)))
    chunks = [(start, min(start + chunk_size, len(items))) for start in range(0, len(items), chunk_size)]
    # Each convert job reads only its own items; unindented, as json's fast encoder needs.
    for start, stop in chunks:
        _write_json(_items_file(staging, start), [item.to_json() for item in items[start:stop]], indent=None)
    staged = StagedPlan(
        caps=caps,
        chunks=chunks,
        warnings=release.warnings,
        official_split=release.official_split,
        layout=release.layout,
        described=release.described if archive is None else f"{archive.name}, unpacked: {release.described}",
        labels=release.labels,
        unpacked=(str((staging / UNPACKED).resolve()), str(archive)) if archive is not None else None,
    )
    _write_json(staging / PLAN_FILE, staged.to_json())
    return {
        "layout": staged.described,
        "images": len(items),
        "positives": sum(1 for item in items if item.fractured),
        "labels": release.labels,
        "chunks": chunks,
        "warnings": release.warnings,
    }


def read_plan(staging: Path) -> StagedPlan:
    return StagedPlan.from_json(json.loads((staging / PLAN_FILE).read_text()))


def _items_file(staging: Path, start: int) -> Path:
    return staging / f"items_{start:06d}.json"


def _read_items(staging: Path, start: int) -> list[PlanItem]:
    return [PlanItem.from_json(item) for item in json.loads(_items_file(staging, start).read_text())]


def _chunk_file(staging: Path, start: int) -> Path:
    return staging / CLASSIFICATION / f"chunk_{start:06d}.json"


def convert_chunk(request: IngestRequest, staging: Path, start: int, progress: Progress) -> dict[str, Any]:
    """Decode the plan's chunk that starts at item `start`: its cases (at each picture's working size), its
    rows of the classification cache (letterboxed) and each picture's hashes."""
    caps = read_plan(staging).caps
    items = _read_items(staging, start)
    working_size = request.working_size
    pixels = np.empty((len(items), working_size, working_size), np.uint8)
    records = []
    upscaler = Upscaler(request.upscale_models)
    for index, item in enumerate(items):
        progress(index, len(items), item.shown)
        picture = load_picture(
            Path(item.path),
            working_size,
            caps.pixels_per_picture,
            square=request.square is not None,
            upscaler=upscaler,
        )
        pixels[index] = letterbox(picture.pixels, working_size)
        case = _write_case_pair(staging / request.dataset_name / CASES, item, picture) if item.case else None
        hashes = exact_hash(picture.pixels), perceptual_hash(picture.pixels)
        records.append(Converted.of(item, picture, case, hashes))
    _write_rows(staging / CLASSIFICATION / CACHE_IMAGES, start, pixels)
    _write_json(_chunk_file(staging, start), [record.to_json() for record in records])
    progress(len(items), len(items), "chunk written")
    return {
        "images": len(items),
        "cases": sum(1 for r in records if r.foreground is not None),
        "warnings": [f"{r.shown}: {r.warning}" for r in records if r.warning],
    }


def _write_rows(path: Path, start: int, rows: np.ndarray) -> None:
    """Write rows [start, start + len(rows)) of the cache file in place: one write, visible on a shared mount
    once the file is closed (no whole-file sync, as flushing a memory map would do)."""
    with path.open("r+b") as handle:
        version = np.lib.format.read_magic(handle)
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        header(handle)
        handle.seek(handle.tell() + start * rows[0].nbytes)
        handle.write(rows.tobytes())


def _write_case_pair(cases: Path, item: PlanItem, picture: Picture) -> tuple[int, int]:
    """The picture and its label map (empty for a negative) as a case; returns its labelled pixels and how
    many of them two labels claimed."""
    rows, columns = picture.pixels.shape
    contested = 0
    if item.segments:
        assert item.coco_size is not None  # a picture with segments came with its COCO entry's size
        width, height = item.coco_size
        if tuple(picture.oriented_size) != (width, height):
            raise InputError(
                f"{item.path} is {picture.oriented_size[0]}x{picture.oriented_size[1]} after its EXIF "
                f"orientation, but COCO image id {item.coco_id} says {width}x{height}; the polygons would not "
                "fit it: replace the picture with the release's or correct the COCO entry"
            )
        mask, contested = label_mask(item.segments, width, height, columns, rows)
    else:
        mask = np.zeros((rows, columns), np.uint8)
    write_case(cases / f"{item.case_id}_0000.nii.gz", picture.pixels)
    write_case(cases / f"{item.case_id}.nii.gz", mask)
    return int(np.count_nonzero(mask)), contested


def assemble(request: IngestRequest, staging: Path, layout: DataRoot) -> tuple[dict[str, Any], dict[str, str]]:
    """Choose and split the cases, write dataset.json, the manifest, the split and the cache, then rename
    them into place.

    Replacing a dataset (--overwrite) also removes what was derived from the old one (nnU-Net's
    preprocessed data and trained folds): they no longer match it.
    """
    staged = read_plan(staging)
    items: list[PlanItem] = []
    records: list[Converted] = []
    for start, _stop in staged.chunks:
        items.extend(_read_items(staging, start))
        records.extend(Converted.from_json(record) for record in json.loads(_chunk_file(staging, start).read_text()))
    by_name = {record.file_name: record for record in records}
    hashes = {name: (record.exact_hash, record.perceptual_hash) for name, record in by_name.items()}
    earlier_manifest = staging / EARLIER_MANIFEST
    earlier = earlier_sides(earlier_manifest, items, hashes) if earlier_manifest.is_file() else None
    selection = select_cases(request, items, hashes, staged.official_split, earlier)
    dataset = staging / request.dataset_name
    _place_cases(dataset, selection.split)
    round_metrics = _compare_corrections(request, items, by_name, selection, dataset)
    train = sorted(case for case, side in selection.split.items() if side == TRAIN)
    test = sorted(case for case, side in selection.split.items() if side == TEST)
    _write_json(dataset / "dataset.json", _dataset_json(request, staged, len(train)))
    _write_json(dataset / MARKER, {"run_staging": staging.name, "request": request.params()})
    _write_json(
        dataset / "split.json",
        {
            "method": request.split,
            "seed": request.seed,
            "test_fraction": request.test_fraction,
            "negatives": request.negatives,
            "train": train,
            "test": test,
        },
    )
    _write_groups(dataset / GROUPS_FILE, selection, request)
    warnings = {record.file_name: record.warning for record in records if record.warning}
    decoded = Decoded(items, by_name, selection, warnings, staged.unpacked)
    _write_manifest(dataset / "manifest.csv", decoded)
    cache = staging / CLASSIFICATION
    _write_labels(cache / CACHE_LABELS, decoded)
    _write_json(cache / CACHE_GEOMETRY, {"size": request.working_size, "square": request.square is not None})
    for start, _stop in staged.chunks:
        _chunk_file(staging, start).unlink()
    raw_root = layout.nnunet_raw
    targets = {
        "dataset": raw_root / request.dataset_name,
        "classification": layout.classification_cache(request.dataset_id),
    }
    _move_into_place(cache, targets["classification"], request, staging)
    replaced = []
    for root in (raw_root, layout.nnunet_preprocessed, layout.nnunet_results):
        for old in existing_datasets(root, request.dataset_id):
            # nnU-Net refuses two folders with one dataset id, whatever their names.
            _make_room(old, request, staging)
            replaced.append(str(old))
    _write_pseudonym_map(layout.pseudonym_map(request.dataset_id), items)
    _move_into_place(dataset, targets["dataset"], request, staging)
    upscaled = sum(1 for r in records if r.upscaled)
    metrics = {
        "images": len(items),
        "positives": sum(1 for item in items if item.fractured),
        "cases": len(selection.split),
        "train": len(train),
        "test": len(test),
        **selection.counts,
        "labels": staged.labels,
        "contested_pixels": sum(by_name[item.file_name].contested for item in items if item.case_id in selection.split),
        "box_only_pictures": sum(1 for item in items if item.box_only),
        "layout": staged.described,
        "working_size": request.working_size,
        "square": request.square is not None,
        "upscaled_pictures": upscaled,
        "upscale": request.upscale,
        **round_metrics,
        "warnings": staged.warnings
        + selection.warnings
        + sorted(f"{record.shown}: {record.warning}" for record in records if record.warning)
        + [f"replaced {path} (--overwrite)" for path in replaced],
    }
    artifacts = {
        "dataset": str(targets["dataset"]),
        "dataset_json": str(targets["dataset"] / "dataset.json"),
        "manifest": str(targets["dataset"] / "manifest.csv"),
        "split": str(targets["dataset"] / "split.json"),
        "groups": str(targets["dataset"] / GROUPS_FILE),
        **({"corrections": str(targets["dataset"] / CORRECTIONS_FILE)} if "pre_annotated" in round_metrics else {}),
        "classification_images": str(targets["classification"] / CACHE_IMAGES),
        "classification_labels": str(targets["classification"] / CACHE_LABELS),
    }
    shutil.rmtree(staging, ignore_errors=True)
    return metrics, artifacts


def _compare_corrections(
    request: IngestRequest, items: list[PlanItem], records: dict[str, Converted], selection: Selection, dataset: Path
) -> dict[str, Any]:
    """--previous with a predict run: each pre-annotated picture against its correction, in corrections.csv."""
    previous = request.previous
    if previous is None or previous.predictions is None:
        return {}
    sizes = {name: (record.width, record.height) for name, record in records.items()}
    found = corrections(previous, items, sizes)
    write_corrections(dataset / CORRECTIONS_FILE, found, selection.split)
    return summary(found, previous.run)


def _dataset_json(request: IngestRequest, staged: StagedPlan, training_cases: int) -> dict[str, Any]:
    """nnU-Net's dataset.json: one label per category of the release, in the release's order."""
    labels = {"background": 0, **{name: index for index, name in enumerate(staged.labels, start=1)}}
    described: dict[str, Any] = {"name": request.dataset_name, "description": COCO_DESCRIPTION}
    if staged.layout == FRACATLAS_LAYOUT:
        described = {
            "name": request.dataset_name,
            "description": DESCRIPTION,
            "reference": "Abedeen et al., Scientific Data 10, 521 (2023), doi:10.1038/s41597-023-02432-4",
            "licence": "CC BY 4.0",
        }
    return {
        **described,
        "channel_names": {"0": "X-ray"},
        "labels": labels,
        "numTraining": training_cases,
        "file_ending": ".nii.gz",
    }


def _write_pseudonym_map(path: Path, items: list[PlanItem]) -> None:
    """Each DICOM picture's pseudonym, patient, file and UIDs, under the data root's private/ folder; a map
    of an earlier dataset with this id goes (--overwrite)."""
    rows = [(item.shown, item.group or "", item.path, *item.uids) for item in items if item.uids]
    if rows:
        write_map(path, rows)
    else:
        path.unlink(missing_ok=True)


def _place_cases(dataset: Path, split: dict[str, str]) -> None:
    """Move each chosen case to its side's folders (renames: the files are written once); drop the rest."""
    cases = dataset / CASES
    for case, side in split.items():
        images, labels = FOLDERS[side]
        os.replace(cases / f"{case}_0000.nii.gz", dataset / images / f"{case}_0000.nii.gz")
        os.replace(cases / f"{case}.nii.gz", dataset / labels / f"{case}.nii.gz")
    shutil.rmtree(cases)


def _write_groups(path: Path, selection: Selection, request: IngestRequest) -> None:
    """The duplicate groups (two members or more) and what was done with them; preprocess reads it to keep
    each group in one fold."""
    members = selection.members(list(selection.group_of))
    _write_json(
        path,
        {
            "near_identical_max_bits": NEAR_BITS,
            "conflicts": request.conflicts,
            "groups": {group: cases for group, cases in members.items() if len(cases) > 1},
            "excluded": selection.excluded,
        },
    )


def _write_csv(path: Path, header: list[str], rows: Iterable[list[Any]]) -> None:
    with replacing(path, text=True) as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


@dataclass(frozen=True)
class Decoded:
    """What the assemble job knows of every picture: the plan's items, what its convert job recorded (by
    file name), the cases chosen and split, and the warnings (by file name)."""

    items: list[PlanItem]
    records: dict[str, Converted]
    selection: Selection
    warnings: dict[str, str]
    unpacked: tuple[str, str] | None  # (the folder a zip was unpacked into, the zip)

    def source_file(self, item: PlanItem) -> str:
        """Where the user finds the picture: its path, or ZIP!/path inside the export zip it came in; for a
        DICOM picture, the private map (its file's name may say who it shows)."""
        if item.uids is not None:
            return PRIVATE_MAP
        if self.unpacked is None or not Path(item.path).is_relative_to(self.unpacked[0]):  # --images: elsewhere
            return item.path
        folder, archive = self.unpacked
        return f"{archive}!/{Path(item.path).relative_to(folder)}"


def _write_manifest(path: Path, decoded: Decoded) -> None:
    """One row per picture: nnU-Net's case or not, its side, its group, its size before and after, and its
    hashes at the working size (`dispatch evaluate` leaves a cohort's copies of these pictures out)."""
    header = [
        "case_id", "source_file", "label", "width", "height", "working_width", "working_height",
        "masks", "foreground_pixels", "contested_pixels", "box_only", "split", "group", "excluded", "upscaled",
        "spacing_mm", "exact_hash", "perceptual_hash", "warning",
    ]  # fmt: skip
    items, records, selection, warnings = decoded.items, decoded.records, decoded.selection, decoded.warnings
    rows = []
    for item in sorted(items, key=lambda item: item.case_id):
        record, case = records[item.file_name], item.case_id
        split = selection.split.get(case, "")
        rows.append(
            [
                case,
                decoded.source_file(item),
                int(item.fractured),
                record.width,
                record.height,
                record.columns,
                record.rows,
                json.dumps(item.segments),
                record.foreground if split else "",
                record.contested if split else "",
                int(item.box_only),
                split,
                selection.group_of[case],
                selection.excluded.get(case, ""),
                record.upscaled,
                "x".join(f"{value:g}" for value in record.spacing_mm or ()),
                record.exact_hash,
                record.perceptual_hash,
                warnings.get(item.file_name, ""),
            ]
        )
    _write_csv(path, header, rows)


def _write_labels(path: Path, decoded: Decoded) -> None:
    header = [
        "index", "image_id", "label", "region", "segmentation_split", "group", "excluded", "rows", "columns",
        *ATTRIBUTE_COLUMNS, "warning",
    ]  # fmt: skip
    items, records, selection, warnings = decoded.items, decoded.records, decoded.selection, decoded.warnings
    rows = []
    for index, item in enumerate(items):
        record, case = records[item.file_name], item.case_id
        rows.append(
            [
                index,
                item.shown,
                int(item.fractured),
                item.region,
                selection.split.get(case, ""),
                selection.group_of[case],
                selection.excluded.get(case, ""),
                record.rows,
                record.columns,
                *(item.attributes.get(column, "") for column in ATTRIBUTE_COLUMNS),
                warnings.get(item.file_name, ""),
            ]
        )
    _write_csv(path, header, rows)


def _discard(path: Path, staging: Path) -> None:
    # Rename first (atomic), delete after: nnU-Net never sees a half-deleted dataset.
    trash = staging / f"replaced-{path.name}"
    os.replace(path, trash)
    shutil.rmtree(trash)


def _make_room(target: Path, request: IngestRequest, staging: Path) -> None:
    if target.exists():
        if not request.overwrite:
            raise InputError(f"{target} exists already; pass --overwrite to replace it or choose another --dataset-id")
        _discard(target, staging)


def _move_into_place(source: Path, target: Path, request: IngestRequest, staging: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    _make_room(target, request, staging)
    os.replace(source, target)
