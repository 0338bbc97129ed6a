"""Read and check a FracAtlas release folder (the layout of the public archive): the label of each picture
from its folder, the fracture polygons from the release's COCO file, dataset.csv's attributes and the
release's own split.

Everything that can be checked without decoding a picture is checked here, so that bad input fails
before any worker converts anything.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from shared.errors import InputError
from workers.ingest.coco import DEFAULT_CAPS, InputCaps, load_coco, mask_segment, picture_size
from workers.ingest.release import FRACATLAS_LAYOUT, ImageEntry, Release, inside_release

COCO_RELATIVE = Path("Annotations") / "COCO JSON" / "COCO_fracture_masks.json"
SPLIT_RELATIVE = Path("Utilities") / "Fracture Split"
FRACTURED, NON_FRACTURED = "Fractured", "Non_fractured"
CATEGORY_NAME = "fractured"
LABEL_NAME, FRACTURE_LABEL = "fracture", 1  # nnU-Net's label
REGIONS = ("hand", "leg", "hip", "shoulder", "mixed")


def is_fracatlas(root: Path) -> bool:
    """The folder looks like the FracAtlas archive, even with a part missing: its COCO file where the
    archive has it, or its two picture folders with no COCO file of an export beside them."""
    if (root / COCO_RELATIVE).exists():
        return True
    folders = all((root / "images" / folder).is_dir() for folder in (FRACTURED, NON_FRACTURED))
    return folders and not any(root.glob("*.json")) and not any(root.glob("*/*.json"))


def read_fracatlas(root: Path, caps: InputCaps = DEFAULT_CAPS) -> Release:
    # Resolved once here, so that every image path under it is absolute without a lookup per file.
    root = root.resolve()
    coco_path = root / COCO_RELATIVE
    for needed in (root / "images" / FRACTURED, root / "images" / NON_FRACTURED, coco_path, root / "dataset.csv"):
        if not needed.exists():
            raise InputError(
                f"{needed} is missing: {root} does not have the FracAtlas release layout "
                "(images/Fractured, images/Non_fractured, 'Annotations/COCO JSON/COCO_fracture_masks.json', "
                "dataset.csv); point --source at the unpacked release"
            )
    for needed in (coco_path, root / "dataset.csv"):
        inside_release(root, needed)
    warnings: list[str] = []
    attributes = _read_attributes(root / "dataset.csv")
    images = [
        ImageEntry(entry.name, inside_release(root, Path(entry.path), entry), folder == FRACTURED,
                   attributes.get(entry.name, {}), region(attributes.get(entry.name, {})))
        for folder in (FRACTURED, NON_FRACTURED)
        for entry in sorted(os.scandir(root / "images" / folder), key=lambda e: e.name)  # names sort faster
        if os.path.splitext(entry.name)[1].lower() in (".jpg", ".jpeg", ".png")
    ]  # fmt: skip
    missing_rows = [image.file_name for image in images if image.file_name not in attributes]
    if missing_rows:
        warnings.append(f"{len(missing_rows)} images have no dataset.csv row (first: {missing_rows[0]})")
    _attach_annotations(coco_path, root, {image.file_name: image for image in images}, caps)
    unannotated = [image.file_name for image in images if image.fractured and not image.segments]
    if unannotated:
        warnings.append(
            f"{len(unannotated)} fractured images have no polygon in the COCO file and are left out of "
            f"the segmentation set (first: {unannotated[0]})"
        )
    split = _read_official_split(root / SPLIT_RELATIVE)
    described = f"FracAtlas release: images/{FRACTURED}, images/{NON_FRACTURED}, {COCO_RELATIVE}; labels fracture=1"
    return Release(root, FRACATLAS_LAYOUT, described, [LABEL_NAME], images, warnings, split)


def region(attributes: dict[str, int]) -> str:
    return next((r for r in REGIONS if attributes.get(r) == 1), "unknown")


def _read_attributes(path: Path) -> dict[str, dict[str, int]]:
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{path} cannot be read as CSV ({error}); restore it from the release") from error
    if rows and "image_id" not in rows[0]:
        raise InputError(f"{path} has no image_id column; restore it from the release")
    table = {}
    for row in rows:
        name = row.pop("image_id")
        table[name] = {key: int(value) for key, value in row.items() if value not in (None, "") and value.isdigit()}
    return table


def _read_official_split(folder: Path) -> dict[str, str]:
    split: dict[str, str] = {}
    for part in ("train", "valid", "test"):
        path = folder / f"{part}.csv"
        if path.exists():
            with path.open(newline="") as handle:
                for row in csv.DictReader(handle):
                    split[Path(row["image_id"]).stem] = part
    return split


def _attach_annotations(coco_path: Path, root: Path, by_name: dict[str, ImageEntry], caps: InputCaps) -> None:
    coco = load_coco(coco_path, caps)
    category_ids = [c["id"] for c in coco.dataset["categories"] if str(c.get("name", "")).lower() == CATEGORY_NAME]
    if not category_ids:
        names = ", ".join(repr(c.get("name")) for c in coco.dataset["categories"]) or "none"
        raise InputError(
            f"{coco_path} has no category named '{CATEGORY_NAME}' (it has: {names}); "
            "use the release's COCO_fracture_masks.json"
        )
    for image_id, info in coco.imgs.items():
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image_id], catIds=category_ids))
        if not annotations:
            continue
        entry = _image_for(info, coco_path, root, by_name)
        entry.coco_id = image_id
        entry.coco_size = picture_size(info, coco_path)
        for annotation in annotations:
            segment = mask_segment(annotation, info, coco_path, FRACTURE_LABEL)
            if segment is None:
                raise InputError(
                    f"{coco_path}: annotation id {annotation.get('id')} ({info['file_name']}) has no polygon "
                    "segmentation; fix it"
                )
            entry.segments.append(segment)


def _image_for(info: dict[str, Any], coco_path: Path, root: Path, by_name: dict[str, ImageEntry]) -> ImageEntry:
    name = str(info.get("file_name", ""))
    if not name or "/" in name or "\\" in name or name in (".", "..") or ".." in Path(name).parts:
        raise InputError(
            f"{coco_path}: image id {info.get('id')} has file_name {name!r}; a file name must be a bare "
            "name with no folder or '..' in it: fix the COCO file"
        )
    picture_size(info, coco_path)
    entry = by_name.get(name)
    if entry is None or not entry.fractured:
        where = f"it is in images/{NON_FRACTURED}/" if entry else "no such file exists"
        raise InputError(
            f"{coco_path}: image id {info['id']} names {name}, but {where}; the annotated image must be "
            f"in {root / 'images' / FRACTURED}: restore it or remove its entry from the COCO file"
        )
    return entry
