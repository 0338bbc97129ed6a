"""The notebook's way, done right: one image at a time, full decode, resize, rasterise, nib.save."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image, ImageFile, ImageOps
from pycocotools import mask as mask_utils

COCO = Path("Annotations") / "COCO JSON" / "COCO_fracture_masks.json"


def baseline_ingest(source: Path, out: Path, size: int = 224) -> int:
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    coco = json.loads((source / COCO).read_text())
    by_name = {image["file_name"]: image for image in coco["images"]}
    polygons: dict[int, list] = {}
    for annotation in coco["annotations"]:
        polygons.setdefault(annotation["image_id"], []).extend(annotation["segmentation"])
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(exist_ok=True)
    paths = sorted((source / "images").rglob("*.jpg"))
    cache = np.empty((len(paths), size, size), np.uint8)
    for index, path in enumerate(paths):
        picture = ImageOps.exif_transpose(Image.open(path)).convert("L")
        pixels = np.asarray(picture.resize((size, size), Image.Resampling.BILINEAR))
        cache[index] = pixels
        info = by_name.get(path.name)
        if info is None:
            continue
        sx, sy = size / info["width"], size / info["height"]
        scaled = [[v * (sx if i % 2 == 0 else sy) for i, v in enumerate(p)] for p in polygons[info["id"]]]
        mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(scaled, size, size)))
        nib.save(nib.Nifti1Image(pixels.T[:, :, None], np.eye(4)), out / "images" / f"{path.stem}_0000.nii.gz")
        nib.save(nib.Nifti1Image(mask.T[:, :, None], np.eye(4)), out / "labels" / f"{path.stem}.nii.gz")
    np.save(out / "cache.npy", cache)
    return len(paths)
