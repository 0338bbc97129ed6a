"""COCO releases as annotation tools export them, made by the tests from a FracAtlas-layout release (the mini
set or a synthetic one): what a radiology group brings from CVAT or Label Studio.

- `cvat_export`: CVAT's "COCO 1.0" (through Datumaro): annotations/instances_default.json, pictures under
  images/default/<folder>/, category ids from 1, masks as `iscrowd: 1` uncompressed RLE, a box-only
  annotation, every picture listed, an `attributes` dict on each annotation.
- `label_studio_export`: Label Studio's COCO export: result.json beside images/, category ids from 0 in name
  order, image ids from 0, file_name `images/...`, polygons, a rectangle with `segmentation: []`, one picture
  listed twice (two annotators).
- `two_category_export`: polygons of two categories (a fracture and a plate over part of it) with a groups
  CSV of patients holding several pictures each.
- `external_cohort`: another hospital's export to validate a model on: PNG and DICOM pictures, three of them
  the training release's own.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from dicom_files import PATIENT, dicom_from
from PIL import Image, ImageOps
from pycocotools import mask as mask_utils

from workers.imaging.pictures import upright_size
from workers.ingest.fracatlas import COCO_RELATIVE, FRACTURED, NON_FRACTURED


def fracatlas_pictures(release: Path, fractured: int, negatives: int) -> list[dict[str, Any]]:
    """The first `fractured` annotated and `negatives` non-fractured pictures: file, folder, size, polygons."""
    coco = json.loads((release / COCO_RELATIVE).read_text())
    polygons: dict[int, list[list[float]]] = {}
    for annotation in coco["annotations"]:
        polygons.setdefault(annotation["image_id"], []).extend(annotation["segmentation"])
    annotated = sorted(coco["images"], key=lambda image: image["file_name"])[:fractured]
    pictures = [
        {
            "file": release / "images" / FRACTURED / image["file_name"],
            "folder": FRACTURED,
            "size": (image["width"], image["height"]),
            "polygons": polygons.get(image["id"], []),
        }
        for image in annotated
    ]
    for path in sorted((release / "images" / NON_FRACTURED).glob("*.jpg"))[:negatives]:
        pictures.append({"file": path, "folder": NON_FRACTURED, "size": upright_size(path), "polygons": []})
    return pictures


def uncompressed_rle(polygons: list[list[float]], width: int, height: int) -> dict[str, Any]:
    """The union of `polygons` as CVAT writes a mask: counts a list of run lengths, column-major, from 0s."""
    mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, height, width)))
    flat = np.asfortranarray(mask).ravel(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0, *counts]
    return {"size": [height, width], "counts": counts}


def _box(polygons: list[list[float]]) -> list[float]:
    xs = [v for polygon in polygons for v in polygon[0::2]]
    ys = [v for polygon in polygons for v in polygon[1::2]]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def cvat_export(release: Path, out: Path, fractured: int = 12, negatives: int = 8) -> Path:
    """A CVAT-style export of the release's first pictures; the first fractured picture has a box only."""
    pictures = fracatlas_pictures(release, fractured, negatives)
    images, annotations = [], []
    for image_id, picture in enumerate(pictures, start=1):
        name = f"{picture['folder']}/{picture['file'].name}"
        target = out / "images" / "default" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(picture["file"], target)
        width, height = picture["size"]
        images.append({"id": image_id, "width": width, "height": height, "file_name": name, "license": 0})
        if not picture["polygons"]:
            continue
        common = {"image_id": image_id, "category_id": 1, "attributes": {"occluded": False}}
        if image_id == 1:
            segmentation: Any = []  # a box drawn instead of a mask
            iscrowd = 0
        else:
            segmentation, iscrowd = uncompressed_rle(picture["polygons"], width, height), 1
        annotations.append(
            {"id": len(annotations) + 1, **common, "segmentation": segmentation, "iscrowd": iscrowd,
             "bbox": _box(picture["polygons"]), "area": 0.0}
        )  # fmt: skip
    _write_coco(
        out / "annotations" / "instances_default.json",
        images,
        annotations,
        [{"id": 1, "name": "fracture", "supercategory": ""}],
    )
    return out


def label_studio_export(release: Path, out: Path, fractured: int = 10, negatives: int = 6) -> Path:
    """A Label Studio-style export: ids from 0, `images/` prefixes, the second fractured picture listed twice
    (its second entry carries another annotator's polygon), the third annotated with a rectangle only."""
    pictures = fracatlas_pictures(release, fractured, negatives)
    (out / "images").mkdir(parents=True)
    images, annotations = [], []
    for picture in pictures:
        name = f"images/{picture['file'].name}"
        shutil.copyfile(picture["file"], out / name)
        width, height = picture["size"]
        entries = 2 if picture is pictures[1] else 1
        for entry in range(entries):
            image_id = len(images)
            images.append({"id": image_id, "width": width, "height": height, "file_name": name})
            polygons = picture["polygons"] if entry == 0 else [_second_annotator(picture["polygons"])]
            if not polygons:
                continue
            segmentation = [] if picture is pictures[2] else polygons
            annotations.append(
                {"id": len(annotations), "image_id": image_id, "category_id": 0, "segmentation": segmentation,
                 "bbox": _box(polygons), "ignore": 0, "iscrowd": 0, "area": 0.0}
            )  # fmt: skip
    _write_coco(out / "result.json", images, annotations, [{"id": 0, "name": "Fracture"}, {"id": 1, "name": "Plate"}])
    return out


def _second_annotator(polygons: list[list[float]]) -> list[float]:
    """A triangle inside the first polygon's box, as a second annotator might draw."""
    x, y, w, h = _box(polygons)
    return [x, y, x + w, y + h / 2, x + w / 2, y + h]


def two_category_export(release: Path, out: Path, fractured: int, negatives: int) -> tuple[Path, Path]:
    """Category 3 'fracture' (the release's polygons) and 7 'plate' (a rectangle over the left half of each
    fracture's box), ids with a gap; and groups.csv: patients of two or three pictures each."""
    pictures = fracatlas_pictures(release, fractured, negatives)
    (out / "images").mkdir(parents=True)
    images, annotations = [], []
    for image_id, picture in enumerate(pictures, start=1):
        shutil.copyfile(picture["file"], out / "images" / picture["file"].name)
        width, height = picture["size"]
        images.append({"id": image_id, "width": width, "height": height, "file_name": picture["file"].name})
        if not picture["polygons"]:
            continue
        x, y, w, h = _box(picture["polygons"])
        plate = [x - w * 0.2, y, x + w * 0.5, y, x + w * 0.5, y + h, x - w * 0.2, y + h]
        plate = [float(np.clip(v, 0, width if i % 2 == 0 else height)) for i, v in enumerate(plate)]
        for category, segmentation in ((3, picture["polygons"]), (7, [plate])):
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                 "segmentation": segmentation, "iscrowd": 0, "bbox": _box(segmentation), "area": 0.0}
            )  # fmt: skip
    categories = [{"id": 3, "name": "fracture"}, {"id": 5, "name": "unused"}, {"id": 7, "name": "plate"}]
    _write_coco(out / "annotations.json", images, annotations, categories)
    groups = out.parent / f"{out.name}-groups.csv"
    lines = ["file_name,group"] + [
        f"{picture['file'].name},patient-{index // 3}" for index, picture in enumerate(pictures)
    ]
    groups.write_text("\n".join(lines) + "\n")
    return out, groups


def _write_coco(path: Path, images: list, annotations: list, categories: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))


def _readable(pictures: list[dict[str, Any]], fractured: int, negatives: int) -> list[dict[str, Any]]:
    """The first `fractured` and `negatives` of `pictures` that decode whole (a synthetic release holds a
    truncated JPEG on purpose), each with its upright grey pixels."""
    chosen: list[dict[str, Any]] = []
    for picture in pictures:
        wanted = fractured if picture["folder"] == FRACTURED else negatives
        if sum(1 for c in chosen if c["folder"] == picture["folder"]) == wanted:
            continue
        try:
            with Image.open(picture["file"]) as image:
                chosen.append({**picture, "grey": np.asarray(ImageOps.exif_transpose(image).convert("L"))})
        except OSError:
            continue
    return chosen


def external_cohort(training: Path, other: Path, out: Path) -> Path:
    """Another hospital's COCO export: 8 fractured and 6 other pictures of `other` (every fourth as DICOM, two
    per made-up patient; `other` needs a few more of each) and two fractured and one other of `training`
    (images/seen-0.jpg to seen-2.jpg, its very files), the category named 'Break', and strata.csv (file_name,
    site)."""
    images, annotations = [], []
    (out / "images").mkdir(parents=True)
    pictures = _readable(fracatlas_pictures(other, fractured=10, negatives=8), 8, 6)
    shared = _readable(fracatlas_pictures(training, fractured=4, negatives=3), 2, 1)
    for index, picture in enumerate(pictures + shared):
        if index >= len(pictures):  # the training release's own file, as another site's archive may hold it
            name = f"images/seen-{index - len(pictures)}.jpg"
            shutil.copyfile(picture["file"], out / name)
        elif index % 4 == 1:
            name = f"images/scan-{index:02d}.dcm"
            patient = {**PATIENT, "PatientID": f"{PATIENT['PatientID']}-{index // 8}"}
            dicom_from(picture["grey"], out / name, patient=patient)
        else:
            name = f"images/new-{index:02d}.png"
            Image.fromarray(picture["grey"]).save(out / name)
        width, height = picture["size"]
        images.append({"id": index + 1, "file_name": name, "width": width, "height": height})
        if picture["polygons"]:
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1, "category_id": 1,
                                "segmentation": picture["polygons"], "iscrowd": 0})  # fmt: skip
    content = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "Break"}]}
    (out / "annotations.json").write_text(json.dumps(content))
    sites = [[image["file_name"], f"site-{image['id'] % 2}"] for image in images]
    with (out / "strata.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["file_name", "site"], *sites])
    return out
