"""A FracAtlas-layout release written again as a COCO release of the same pictures (linked, not copied): one
COCO file listing every picture, the fractured ones with their polygons under a category id 1, the pictures
under images/<folder>/; and that COCO release again with every picture a DICOM radiograph (12 bits, as a DX
modality stores it). `make bench-ingest` times the three on one stack."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from tests.dicom_files import PATIENT, dicom_from
from workers.imaging.pictures import upright_size
from workers.ingest.fracatlas import COCO_RELATIVE, FRACTURED, NON_FRACTURED


def as_coco_release(release: Path, target: Path) -> Path:
    coco = json.loads((release / COCO_RELATIVE).read_text())
    annotated = {image["file_name"]: image for image in coco["images"]}
    images, annotations = [], []
    for folder in (FRACTURED, NON_FRACTURED):
        (target / "images" / folder).mkdir(parents=True)
        for path in sorted((release / "images" / folder).glob("*.jpg")):
            os.link(path, target / "images" / folder / path.name)
            known = annotated.get(path.name) if folder == FRACTURED else None
            width, height = (known["width"], known["height"]) if known else upright_size(path)
            image_id = len(images) + 1
            images.append({"id": image_id, "file_name": f"{folder}/{path.name}", "width": width, "height": height})
            if known:
                annotations += [
                    {**annotation, "id": len(annotations) + index + 1, "image_id": image_id, "category_id": 1}
                    for index, annotation in enumerate(a for a in coco["annotations"] if a["image_id"] == known["id"])
                ]
    (target / "annotations.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "fracture"}]})
    )
    return target


def as_dicom_release(coco_release: Path, target: Path) -> Path:
    """The COCO release with each upright picture written as an uncompressed 12-bit DICOM DX file, each of its
    own patient (a DICOM release's patients are its split groups)."""
    coco = json.loads((coco_release / "annotations.json").read_text())
    # The release's cut-short JPEGs are read as the ingest reads them (Pillow's setting is module-wide).
    truncated, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, True
    try:
        for number, image in enumerate(coco["images"]):
            name = f"{image['file_name'].rsplit('.', 1)[0]}.dcm"
            (target / "images" / name).parent.mkdir(parents=True, exist_ok=True)
            with Image.open(coco_release / "images" / image["file_name"]) as picture:
                grey = np.asarray(ImageOps.exif_transpose(picture).convert("L"))
            dicom_from(grey, target / "images" / name, patient={**PATIENT, "PatientID": f"bench-{number}"})
            image["file_name"] = name
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = truncated
    (target / "annotations.json").write_text(json.dumps(coco))
    return target
