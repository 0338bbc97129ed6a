"""A small synthetic FracAtlas release: the real layout with the real quirks, quick to train on a CPU.

Pictures are dark fields with bright "bones"; a fracture is a dark jagged crack inside its polygon, so
a segmentation model has something real to find. The quirks of the release are kept on purpose:
category id 0, several polygons per image, 1- and 3-channel JPEGs, EXIF rotations (90 and 180 degrees),
truncated JPEGs, and a dataset.csv row whose `fractured` column disagrees with the folder.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from workers.ingest.fracatlas import COCO_RELATIVE, FRACTURED, NON_FRACTURED, REGIONS, SPLIT_RELATIVE

SIZES = ((373, 454), (454, 373), (400, 500))
ROTATE_90_TAG, ROTATE_180_TAG = 6, 3
# What to do to an upright picture so that applying its EXIF tag gives it back.
STORE_FOR_TAG = {ROTATE_90_TAG: Image.Transpose.ROTATE_90, ROTATE_180_TAG: Image.Transpose.ROTATE_180}
CSV_COLUMNS = (
    "image_id",
    *REGIONS,
    "hardware",
    "multiscan",
    "fractured",
    "fracture_count",
    "frontal",
    "lateral",
    "oblique",
)


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    noise = rng.normal(30, 8, (height, width)).clip(0, 255).astype(np.uint8)
    picture = Image.fromarray(noise, "L")
    draw = ImageDraw.Draw(picture)
    for _ in range(2):
        x0, y0 = rng.uniform(0.15, 0.45) * width, rng.uniform(0.05, 0.2) * height
        draw.rounded_rectangle(
            [x0, y0, x0 + width * 0.22, height - y0], radius=int(width * 0.08), fill=int(rng.integers(150, 200))
        )
    return picture


def _fracture_polygon(rng: np.random.Generator, width: int, height: int) -> list[float]:
    cx, cy = rng.uniform(0.3, 0.7) * width, rng.uniform(0.25, 0.75) * height
    radius = rng.uniform(0.06, 0.1) * min(width, height)
    points = []
    for k in range(6):
        angle = 2 * math.pi * k / 6 + rng.uniform(-0.3, 0.3)
        r = radius * rng.uniform(0.6, 1.0)
        points += [round(cx + r * math.cos(angle), 2), round(cy + r * math.sin(angle), 2)]
    return points


def _draw_fracture(picture: Image.Image, polygon: list[float], rng: np.random.Generator) -> None:
    draw = ImageDraw.Draw(picture)
    xy = list(zip(polygon[0::2], polygon[1::2], strict=True))
    draw.polygon(xy, fill=int(rng.integers(215, 245)))
    # The crack: a dark jagged line through the bright region.
    draw.line([xy[0], xy[2], xy[3], xy[5]], fill=10, width=3)


def _save_jpeg(picture: Image.Image, path: Path, orientation: int, truncate: bool, rgb: bool) -> None:
    stored = picture.transpose(STORE_FOR_TAG[orientation]) if orientation in STORE_FOR_TAG else picture
    if rgb:
        stored = stored.convert("RGB")
    buffer = io.BytesIO()
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    stored.save(buffer, "JPEG", quality=90, exif=exif.tobytes())
    data = buffer.getvalue()
    path.write_bytes(data[: int(len(data) * 0.7)] if truncate else data)


def make_synthetic_release(root: Path, fractured: int = 24, non_fractured: int = 16, seed: int = 0) -> Path:
    """Write a release with `fractured` + `non_fractured` images under `root`; returns `root`."""
    if fractured < 4 or non_fractured < 2:
        raise ValueError("a synthetic release needs at least 4 fractured and 2 non-fractured images")
    rng = np.random.default_rng(seed)
    for folder in (FRACTURED, NON_FRACTURED):
        (root / "images" / folder).mkdir(parents=True, exist_ok=True)
    (root / COCO_RELATIVE).parent.mkdir(parents=True, exist_ok=True)
    (root / SPLIT_RELATIVE).mkdir(parents=True, exist_ok=True)
    coco = {
        "info": {"description": "synthetic FracAtlas"},
        "images": [],
        "annotations": [],
        "categories": [{"id": 0, "name": "fractured"}],
    }
    rows = []
    for index in range(fractured + non_fractured):
        is_fractured = index < fractured
        name = f"IMG{index + 1:07d}.jpg"
        width, height = SIZES[index % len(SIZES)]
        picture = _background(rng, width, height)
        polygons = []
        if is_fractured:
            polygons = [_fracture_polygon(rng, width, height) for _ in range(3 if index == 2 else 1 + index % 2)]
            for polygon in polygons:
                _draw_fracture(picture, polygon, rng)
            image_id = len(coco["images"]) + 1
            coco["images"].append({"id": image_id, "width": width, "height": height, "file_name": name})
            for polygon in polygons:
                xs, ys = polygon[0::2], polygon[1::2]
                coco["annotations"].append(
                    {
                        "id": len(coco["annotations"]) + 1,
                        "iscrowd": 0,
                        "image_id": image_id,
                        "category_id": 0,
                        "segmentation": [polygon],
                        "area": 0.0,
                        "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                    }
                )
        orientation = {0: ROTATE_90_TAG, 1: ROTATE_180_TAG}.get(index, 1) if is_fractured else 1
        folder = FRACTURED if is_fractured else NON_FRACTURED
        truncate = not is_fractured and index - fractured < 2
        _save_jpeg(picture, root / "images" / folder / name, orientation, truncate, rgb=index % 2 == 1)
        region = REGIONS[index % 4]
        # The release's own quirk: one fractured image whose `fractured` column says 0.
        fractured_column = int(is_fractured and index != 3)
        rows.append(
            {
                "image_id": name,
                **{r: int(r == region) for r in REGIONS},
                "hardware": 0,
                "multiscan": 0,
                "fractured": fractured_column,
                "fracture_count": len(polygons),
                "frontal": 1,
                "lateral": 0,
                "oblique": 0,
            }
        )
    (root / COCO_RELATIVE).write_text(json.dumps(coco))
    with (root / "dataset.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    names = [row["image_id"] for row in rows[:fractured]]
    n_eval = max(1, fractured // 10)
    for part, members in (
        ("test", names[:n_eval]),
        ("valid", names[n_eval : 2 * n_eval]),
        ("train", names[2 * n_eval :]),
    ):
        with (root / SPLIT_RELATIVE / f"{part}.csv").open("w", newline="") as handle:
            handle.write("image_id\n" + "".join(f"{n}\n" for n in members))
    return root


def synthetic_release(folder: Path) -> Path:
    """The demo's release at `folder` (under DATA_ROOT), built the first time an ingest asks for it: in a
    sibling folder renamed into place, so that two ingests at once never read a half-written release."""
    if (folder / "dataset.csv").exists():
        return folder
    building = folder.with_name(f".{folder.name}-{uuid.uuid4().hex[:8]}")
    make_synthetic_release(building)
    try:
        os.rename(building, folder)
    except OSError:  # another ingest renamed its own first, or an unfinished one from an older version is there
        if not (folder / "dataset.csv").exists():
            shutil.rmtree(folder)
            os.rename(building, folder)
        else:
            shutil.rmtree(building)
    return folder
