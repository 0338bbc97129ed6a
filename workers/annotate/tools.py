"""Predictions written as the annotation tools import them.

CVAT: a COCO 1.0 zip as CVAT exports and imports it (annotations/instances_default.json, read through
Datumaro): category ids from 1 (CVAT mistakes an id 0), `file_name`s as the task's frames are named, each
region a polygon (workers/annotate/shapes.py).

Label Studio: a tasks JSON, each task the picture's URL and its `predictions` (`model_version` the run,
`score` the fracture probability, which sorts the Data Manager; each region a `polygonlabels` result in
percent of the picture, with its own id; the classifier's finding a `choices` result, so that a picture
with no region keeps its prediction, which Label Studio drops where the result is empty), and the labelling
config those results name.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from xml.sax.saxutils import quoteattr

from shared.defaults import ANNOTATION_TOOLS
from workers.annotate.shapes import Shape
from workers.files import replacing

Tool = Literal[ANNOTATION_TOOLS]  # type: ignore[valid-type]
CVAT_FILE = "cvat_coco.zip"  # upload it in CVAT: Actions, Upload annotations, COCO 1.0
CVAT_INSTANCES = "annotations/instances_default.json"  # inside it: the default subset, as CVAT names it
LABEL_STUDIO_TASKS = "label_studio_tasks.json"
LABEL_STUDIO_CONFIG = "label_studio_config.xml"
# The names the labelling config gives its image, its polygon tool and the finding; every result names them.
IMAGE_NAME, POLYGONS_NAME, FINDING_NAME = "image", "label", "finding"
FINDINGS = ("fracture", "no fracture")


@dataclass(frozen=True)
class AnnotatedPicture:
    file_name: str  # as the tool's task names the picture: relative to the folder predicted
    width: int
    height: int
    shapes: list[Shape]
    probability: float  # the classifier's fracture probability
    fractured: bool  # the classifier's finding, at its threshold


def write_for(
    tool: Tool, out: Path, pictures: list[AnnotatedPicture], categories: list[str], model_version: str, **kw: Any
) -> list[Path]:
    """The tool's files in `out` (Label Studio's also take `image_url` and `colours`); returns them."""
    if tool == "cvat":
        return [write_cvat(out / CVAT_FILE, pictures, categories)]
    return write_label_studio(out, pictures, categories, model_version, **kw)


def write_cvat(path: Path, pictures: list[AnnotatedPicture], categories: list[str]) -> Path:
    category_id = {name: number for number, name in enumerate(categories, start=1)}
    images, annotations = [], []
    for image_id, picture in enumerate(pictures, start=1):
        size = {"width": picture.width, "height": picture.height}
        images.append({"id": image_id, "file_name": picture.file_name, **size})
        for shape in picture.shapes:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_id[shape.category],
                    "segmentation": [shape.polygon],
                    "area": shape.area,
                    "bbox": list(shape.bbox),
                    "iscrowd": 0,
                    "attributes": {"occluded": False},
                }
            )
    content = {
        "licenses": [{"name": "", "id": 0, "url": ""}],
        "info": {"description": "fracatlas-jobs predictions (pre-annotations)"},
        "categories": [{"id": number, "name": name, "supercategory": ""} for name, number in category_id.items()],
        "images": images,
        "annotations": annotations,
    }
    with replacing(path) as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(CVAT_INSTANCES, json.dumps(content, indent=1))
    return path


def write_label_studio(
    out: Path,
    pictures: list[AnnotatedPicture],
    categories: list[str],
    model_version: str,
    image_url: str,
    colours: list[str],
) -> list[Path]:
    """The tasks and their labelling config; `image_url` + a picture's file_name is its task's image;
    `colours`: each category's, as #rrggbb."""
    tasks = [_task(picture, model_version, image_url) for picture in pictures]
    _write(out / LABEL_STUDIO_TASKS, tasks)
    with replacing(out / LABEL_STUDIO_CONFIG, text=True) as handle:
        handle.write(labelling_config(categories, colours))
    return [out / LABEL_STUDIO_TASKS, out / LABEL_STUDIO_CONFIG]


def labelling_config(categories: list[str], colours: list[str]) -> str:
    labels = "\n".join(
        f"    <Label value={quoteattr(name)} background={quoteattr(colour)}/>"
        for name, colour in zip(categories, colours, strict=True)
    )
    return (
        "<View>\n"
        f'  <Image name="{IMAGE_NAME}" value="${IMAGE_NAME}" zoom="true"/>\n'
        f'  <PolygonLabels name="{POLYGONS_NAME}" toName="{IMAGE_NAME}" strokeWidth="2" opacity="0.4">\n'
        f"{labels}\n"
        "  </PolygonLabels>\n"
        f'  <Choices name="{FINDING_NAME}" toName="{IMAGE_NAME}" choice="single" showInline="true">\n'
        + "".join(f'    <Choice value="{finding}"/>\n' for finding in FINDINGS)
        + "  </Choices>\n"
        "</View>\n"
    )


def _task(picture: AnnotatedPicture, model_version: str, image_url: str) -> dict[str, Any]:
    results = [
        {
            "id": f"p{number}",
            "type": "polygonlabels",
            "from_name": POLYGONS_NAME,
            "to_name": IMAGE_NAME,
            "original_width": picture.width,
            "original_height": picture.height,
            "image_rotation": 0,
            "value": {
                "points": [
                    [round(100 * x / picture.width, 4), round(100 * y / picture.height, 4)] for x, y in shape.points()
                ],
                "closed": True,
                "polygonlabels": [shape.category],
            },
        }
        for number, shape in enumerate(picture.shapes, start=1)
    ]
    finding = FINDINGS[0] if picture.fractured else FINDINGS[1]
    results.append(
        {
            "id": FINDING_NAME,
            "type": "choices",
            "from_name": FINDING_NAME,
            "to_name": IMAGE_NAME,
            "value": {"choices": [finding]},
        }
    )
    return {
        "data": {IMAGE_NAME: image_url + picture.file_name, "file_name": picture.file_name},
        "predictions": [{"model_version": model_version, "score": round(picture.probability, 4), "result": results}],
    }


def _write(path: Path, content: Any) -> None:
    with replacing(path, text=True) as handle:
        json.dump(content, handle, indent=1)
