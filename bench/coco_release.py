"""A FracAtlas-layout release written again as a COCO release of the same pictures (linked, not copied): one
COCO file listing every picture, the fractured ones with their polygons under a category id 1, the pictures
under images/<folder>/. `make bench-ingest` times both layouts on one stack."""

from __future__ import annotations

import json
import os
from pathlib import Path

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
