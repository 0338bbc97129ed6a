"""A predicted mask as CVAT and Label Studio take it: traced polygons that hold exactly the mask's pixels (a
ring and a speckle of hundreds of regions too), CVAT's COCO zip read back by pycocotools and by Datumaro as
CVAT reads it, Label Studio's percent polygons and labelling config."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
from annotation_tools import datumaro_masks
from pycocotools.coco import COCO
from scipy import ndimage

from workers.annotate.shapes import MAX_SHAPES_PER_PICTURE, rasterised, traced_shapes
from workers.annotate.tools import (
    CVAT_INSTANCES,
    AnnotatedPicture,
    labelling_config,
    write_cvat,
    write_label_studio,
)
from workers.ingest.coco import DEFAULT_CAPS


def label_map() -> np.ndarray:
    """A disc and a thin crack of 'fracture', a ring (a hole) and a lone pixel of 'metal'."""
    rows, columns = np.mgrid[:90, :120]
    labels = np.zeros((90, 120), np.uint8)
    labels[(rows - 30) ** 2 + (columns - 40) ** 2 < 120] = 1
    labels[(np.abs(rows - 0.4 * columns - 40) < 0.8) & (columns > 60)] = 1
    distance = (rows - 65) ** 2 + (columns - 25) ** 2
    labels[(distance < 90) & (distance >= 16)] = 2
    labels[5, 110] = 2
    return labels


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def test_traced_shapes_hold_exactly_the_masks_pixels() -> None:
    labels = label_map()
    shapes = traced_shapes(labels, ["fracture", "metal"])
    assert sorted(s.category for s in shapes) == ["fracture", "fracture", "metal", "metal"], "one per region"
    for index, name in enumerate(["fracture", "metal"], start=1):
        assert np.array_equal(rasterised(shapes, name, *labels.shape), labels == index)
    assert traced_shapes(np.zeros((10, 10), np.uint8), ["fracture"]) == []


def test_a_speckle_of_hundreds_of_regions_goes_as_few_shapes_with_every_pixel() -> None:
    """A weak model's speckle: past a category's share of MAX_SHAPES_PER_PICTURE, its smallest regions go as
    one shape, so that the corrected export comes back under the ingest's cap."""
    random = np.random.default_rng(7)
    labels = (random.random((300, 400)) < 0.2).astype(np.uint8) + (random.random((300, 400)) < 0.05)
    labels[50:150, 50:200] = 1
    labels[80:100, 80:120] = 0  # a hole in the largest region
    labels[200:260, 300:380] = 2
    assert ndimage.label(labels == 1)[1] > DEFAULT_CAPS.polygons_per_image
    shapes = traced_shapes(labels, ["fracture", "metal"])
    share = MAX_SHAPES_PER_PICTURE // 2
    assert [sum(s.category == name for s in shapes) for name in ("fracture", "metal")] == [share, share]
    assert len(shapes) <= DEFAULT_CAPS.polygons_per_image
    for index, name in enumerate(["fracture", "metal"], start=1):
        assert np.array_equal(rasterised(shapes, name, *labels.shape), labels == index), name


def pictures() -> list[AnnotatedPicture]:
    labels = label_map()
    return [
        AnnotatedPicture("ward 3/a.jpg", 120, 90, traced_shapes(labels, ["fracture", "metal"]), 0.83, True),
        AnnotatedPicture("b.png", 120, 90, [], 0.12, False),
    ]


def test_the_cvat_zip_reads_back_in_pycocotools_and_in_datumaro_as_cvat_reads_it(tmp_path: Path) -> None:
    written = write_cvat(tmp_path / "cvat.zip", pictures(), ["fracture", "metal"])
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(written) as archive:
        assert archive.namelist() == [CVAT_INSTANCES]
        archive.extractall(unpacked)
    content = json.loads((unpacked / CVAT_INSTANCES).read_text())
    assert [c["id"] for c in content["categories"]] == [1, 2], "no category id 0: CVAT mistakes it"
    assert [i["file_name"] for i in content["images"]] == ["ward 3/a.jpg", "b.png"]
    coco = COCO(str(unpacked / CVAT_INSTANCES))
    labels = label_map()
    for category in coco.loadCats(coco.getCatIds()):
        ids = coco.getAnnIds(imgIds=[1], catIds=[category["id"]])
        drawn = np.logical_or.reduce([coco.annToMask(a) > 0 for a in coco.loadAnns(ids)])
        assert iou(drawn, labels == category["id"]) >= 0.95, category["name"]
    assert coco.getAnnIds(imgIds=[2]) == []

    read = datumaro_masks(written, tmp_path / "datumaro")
    assert sorted(read) == ["ward 3/a|fracture", "ward 3/a|metal"]
    for index, name in enumerate(["fracture", "metal"], start=1):
        assert iou(read[f"ward 3/a|{name}"], labels == index) >= 0.95, name


def test_label_studio_tasks_carry_percent_polygons_and_the_run(tmp_path: Path) -> None:
    files = write_label_studio(
        tmp_path, pictures(), ["fracture", "metal"], "r12", "/data/local-files/?d=round2/", ["#ff2828", "#28c8ff"]
    )
    tasks = json.loads(files[0].read_text())
    first = tasks[0]
    assert first["data"]["image"] == "/data/local-files/?d=round2/ward 3/a.jpg"
    prediction = first["predictions"][0]
    assert (prediction["model_version"], prediction["score"]) == ("r12", 0.83)
    results = prediction["result"]
    assert len({r["id"] for r in results}) == len(results) == 5
    assert results[-1]["type"] == "choices" and results[-1]["value"]["choices"] == ["fracture"]
    for result in results[:-1]:
        assert (result["type"], result["from_name"], result["to_name"]) == ("polygonlabels", "label", "image")
        points = np.array(result["value"]["points"])
        assert points.min() >= 0 and points.max() <= 100
    empty = tasks[1]["predictions"][0]["result"]
    assert [r["value"]["choices"] for r in empty] == [["no fracture"]], "no region: still a prediction, to sort by"
    config = ElementTree.fromstring(files[1].read_text())
    assert [label.get("value") for label in config.iter("Label")] == ["fracture", "metal"]
    assert config.find("PolygonLabels").get("toName") == config.find("Image").get("name") == "image"
    assert [choice.get("value") for choice in config.iter("Choice")] == ["fracture", "no fracture"]
    assert "&amp;" in labelling_config(["A&B"], ["#000000"]), "a category's name is escaped"
