"""FracAtlas release -> nnU-Net v2 raw dataset + classification cache, in three steps that workers share:

plan      read and check the release, split it, write plan.json and each chunk's items into a staging folder
convert   decode one chunk of pictures, write its NIfTI cases and its slice of the classification cache
assemble  write dataset.json, the manifest and the cache, then rename both into place

Nothing appears under nnUNet_raw until the final rename, so a failed ingest leaves no half dataset.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from shared.contract import IngestRequest
from shared.errors import InputError
from shared.layout import CACHE_IMAGES, CACHE_LABELS, DataRoot, existing_datasets
from workers.cpu.masks import fracture_mask
from workers.cpu.pictures import load_picture
from workers.cpu.release import DEFAULT_CAPS, REGIONS, InputCaps, read_release
from workers.cpu.split import TEST, TRAIN, official_split, stratified_split
from workers.files import replacing
from workers.nifti import write_case

PLAN_FILE = "plan.json"
MARKER = ".made-by-fracatlas-jobs"  # in every dataset the ingest writes: --overwrite replaces only these
DESCRIPTION = "FracAtlas fracture segmentation: COCO polygons scaled to the output size"
MIN_CHUNKS = 8
CLASSIFICATION = "classification"
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
) -> dict[str, Any]:
    """Check the release and the target, split, and lay out the staging folder; returns plan metrics."""
    existing = existing_datasets(raw_root, request.dataset_id)
    if existing and not request.overwrite:
        raise InputError(f"{existing[0]} exists already; pass --overwrite to replace it or choose another --dataset-id")
    _check_ours_to_replace(request.dataset_id, raw_root, derived_roots)
    release = read_release(release_folder, caps)
    warnings = list(release.warnings)
    cases = {image.case_id: image.region for image in release.fractured if image.polygons}
    if request.split == "official":
        split = official_split(sorted(cases), release.official_split, warnings)
    else:
        split = stratified_split(cases, request.test_fraction, request.seed)
    items = [
        {
            "file_name": image.file_name,
            "path": str(image.path),
            "case_id": image.case_id,
            "fractured": image.fractured,
            "region": image.region,
            "attributes": image.attributes,
            "coco_id": image.coco_id,
            "coco_size": image.coco_size,
            "polygons": image.polygons,
            "split": split.get(image.case_id) if image.polygons else None,
        }
        for image in release.images
    ]
    shutil.rmtree(staging, ignore_errors=True)
    for folder in (*FOLDERS[TRAIN], *FOLDERS[TEST]):
        (staging / request.dataset_name / folder).mkdir(parents=True)
    (staging / CLASSIFICATION).mkdir()
    # The cache is one array file from the start: each convert job fills its own rows in place.
    np.lib.format.open_memmap(
        staging / CLASSIFICATION / CACHE_IMAGES,
        mode="w+",
        dtype=np.uint8,
        shape=(len(items), request.size, request.size),
    ).flush()
    # At least MIN_CHUNKS chunks, so that a small release still spreads over the workers.
    chunk_size = max(1, min(chunk_size, math.ceil(len(items) / MIN_CHUNKS)))
    chunks = [[start, min(start + chunk_size, len(items))] for start in range(0, len(items), chunk_size)]
    # Each convert job reads only its own items; unindented, as json's fast encoder needs.
    for start, stop in chunks:
        _write_json(_items_file(staging, start), items[start:stop], indent=None)
    plan_content = {"request": request.params(), "caps": asdict(caps), "chunks": chunks, "warnings": warnings}
    _write_json(staging / PLAN_FILE, plan_content)
    n_test = sum(1 for value in split.values() if value == TEST)
    return {
        "images": len(items),
        "cases": len(split),
        "train": len(split) - n_test,
        "test": n_test,
        "chunks": chunks,
        "warnings": warnings,
    }


def read_plan(staging: Path) -> dict[str, Any]:
    return json.loads((staging / PLAN_FILE).read_text())


def _items_file(staging: Path, start: int) -> Path:
    return staging / f"items_{start:06d}.json"


def _read_items(staging: Path, start: int) -> list[dict[str, Any]]:
    return json.loads(_items_file(staging, start).read_text())


def convert_chunk(staging: Path, start: int, progress: Progress) -> dict[str, Any]:
    """Decode the plan's chunk that starts at item `start`; write its cases and its classification slice."""
    planned = read_plan(staging)
    request, caps = IngestRequest.parse(planned["request"]), InputCaps(**planned["caps"])
    items = _read_items(staging, start)
    size = request.size
    pixels = np.empty((len(items), size, size), np.uint8)
    records = []
    for index, item in enumerate(items):
        progress(index, len(items), item["file_name"])
        picture = load_picture(Path(item["path"]), size, caps.pixels_per_picture)
        pixels[index] = picture.pixels
        record = {
            "file_name": item["file_name"],
            "width": picture.oriented_size[0],
            "height": picture.oriented_size[1],
            "warning": picture.warning,
            "foreground": None,
        }
        if item["split"] is not None:
            record["foreground"] = _write_segmentation_case(staging / request.dataset_name, item, picture, size)
        records.append(record)
    _write_rows(staging / CLASSIFICATION / CACHE_IMAGES, start, pixels)
    _write_json(staging / CLASSIFICATION / f"chunk_{start:06d}.json", records)
    progress(len(items), len(items), "chunk written")
    return {
        "images": len(items),
        "cases": sum(1 for r in records if r["foreground"] is not None),
        "warnings": [f"{r['file_name']}: {r['warning']}" for r in records if r["warning"]],
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


def _write_segmentation_case(dataset: Path, item: dict[str, Any], picture: Any, size: int) -> int:
    width, height = item["coco_size"]
    if tuple(picture.oriented_size) != (width, height):
        raise InputError(
            f"{item['path']} is {picture.oriented_size[0]}x{picture.oriented_size[1]} after its EXIF "
            f"orientation, but COCO image id {item['coco_id']} says {width}x{height}; the polygons would not "
            "fit it: replace the picture with the release's or correct the COCO entry"
        )
    mask = fracture_mask(item["polygons"], width, height, size)
    images, labels = FOLDERS[item["split"]]
    write_case(dataset / images / f"{item['case_id']}_0000.nii.gz", picture.pixels)
    write_case(dataset / labels / f"{item['case_id']}.nii.gz", mask)
    return int(mask.sum())


def assemble(staging: Path, layout: DataRoot) -> tuple[dict[str, Any], dict[str, str]]:
    """Write dataset.json, the manifest, the split and the cache, then rename them into place.

    Replacing a dataset (--overwrite) also removes what was derived from the old one (nnU-Net's
    preprocessed data and trained folds): they no longer match it.
    """
    content = read_plan(staging)
    request = IngestRequest.parse(content["request"])
    items, records = [], []
    for start, _stop in content["chunks"]:
        items.extend(_read_items(staging, start))
        records.extend(json.loads((staging / CLASSIFICATION / f"chunk_{start:06d}.json").read_text()))
    dataset = staging / request.dataset_name
    cases = [item for item in items if item["split"] is not None]
    train = sorted(item["case_id"] for item in cases if item["split"] == TRAIN)
    test = sorted(item["case_id"] for item in cases if item["split"] == TEST)
    _write_json(
        dataset / "dataset.json",
        {
            "name": request.dataset_name,
            "description": DESCRIPTION,
            "reference": "Abedeen et al., Scientific Data 10, 521 (2023), doi:10.1038/s41597-023-02432-4",
            "licence": "CC BY 4.0",
            "channel_names": {"0": "X-ray"},
            "labels": {"background": 0, "fracture": 1},
            "numTraining": len(train),
            "file_ending": ".nii.gz",
        },
    )
    _write_json(dataset / MARKER, {"run_staging": staging.name, "request": request.params()})
    _write_json(
        dataset / "split.json",
        {
            "method": request.split,
            "seed": request.seed,
            "test_fraction": request.test_fraction,
            "train": train,
            "test": test,
        },
    )
    warnings = {record["file_name"]: record["warning"] for record in records if record["warning"]}
    _write_manifest(dataset / "manifest.csv", cases, records, warnings)
    cache = staging / CLASSIFICATION
    _write_labels(cache / CACHE_LABELS, items, warnings)
    for start, _stop in content["chunks"]:
        (cache / f"chunk_{start:06d}.json").unlink()
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
    _move_into_place(dataset, targets["dataset"], request, staging)
    metrics = {
        "images": len(items),
        "positives": sum(1 for item in items if item["fractured"]),
        "cases": len(cases),
        "train": len(train),
        "test": len(test),
        "warnings": content["warnings"]
        + [f"{name}: {text}" for name, text in sorted(warnings.items())]
        + [f"replaced {path} (--overwrite)" for path in replaced],
    }
    artifacts = {
        "dataset": str(targets["dataset"]),
        "dataset_json": str(targets["dataset"] / "dataset.json"),
        "manifest": str(targets["dataset"] / "manifest.csv"),
        "split": str(targets["dataset"] / "split.json"),
        "classification_images": str(targets["classification"] / CACHE_IMAGES),
        "classification_labels": str(targets["classification"] / CACHE_LABELS),
    }
    shutil.rmtree(staging, ignore_errors=True)
    return metrics, artifacts


def _write_manifest(
    path: Path, cases: list[dict[str, Any]], records: list[dict[str, Any]], warnings: dict[str, str]
) -> None:
    by_name = {record["file_name"]: record for record in records}
    with replacing(path, text=True) as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["case_id", "source_file", "width", "height", "polygons", "foreground_pixels", "split", "warning"]
        )
        for item in sorted(cases, key=lambda item: item["case_id"]):
            width, height = item["coco_size"]
            writer.writerow(
                [
                    item["case_id"],
                    item["path"],
                    width,
                    height,
                    json.dumps(item["polygons"]),
                    by_name[item["file_name"]]["foreground"],
                    item["split"],
                    warnings.get(item["file_name"], ""),
                ]
            )


def _write_labels(path: Path, items: list[dict[str, Any]], warnings: dict[str, str]) -> None:
    with replacing(path, text=True) as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "image_id", "label", "region", "segmentation_split", *ATTRIBUTE_COLUMNS, "warning"])
        for index, item in enumerate(items):
            writer.writerow(
                [
                    index,
                    item["file_name"],
                    int(item["fractured"]),
                    item["region"],
                    item["split"] or "",
                    *(item["attributes"].get(column, "") for column in ATTRIBUTE_COLUMNS),
                    warnings.get(item["file_name"], ""),
                ]
            )


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
