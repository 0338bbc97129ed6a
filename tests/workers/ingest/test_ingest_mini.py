"""The real FracAtlas mini set (../shared) through the stack: correct, aligned labels nnU-Net accepts, at
each picture's working size (the long side 512, the aspect kept), negatives beside the fractures, and the
set's one near-identical pair kept together."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import numpy as np
import pytest
from conftest import Stack
from PIL import Image, ImageOps

from workers.imaging.geometry import working_shape
from workers.ingest.coco import load_coco
from workers.ingest.fracatlas import COCO_RELATIVE
from workers.ingest.masks import rasterize
from workers.nnunet.nifti import read_case

SIZE = 512  # the ingest's default long side
NEAR_PAIR = ("IMG0002904", "IMG0004232")  # the same forearm twice, one copy truncated: near-identical
DRAFT = 224  # a working size at which the large radiographs decode from their DC scans


def reference_label(coco_path: Path, file_name: str) -> np.ndarray:
    """pycocotools' own rasterisation at the original size, resized to the working size."""
    coco = load_coco(coco_path)
    info = next(image for image in coco.imgs.values() if image["file_name"] == file_name)
    annotations = coco.loadAnns(coco.getAnnIds(imgIds=[info["id"]]))
    full = np.zeros((info["height"], info["width"]), np.uint8)
    for annotation in annotations:
        full |= coco.annToMask(annotation)
    shape = working_shape(info["width"], info["height"], SIZE)
    return np.asarray(Image.fromarray(full * 255).resize(shape, Image.Resampling.BILINEAR)) >= 128


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_mini_set_ingest(system: Stack, mini: Path) -> None:
    result = system.dispatch("ingest", "--source", str(mini), "--dataset-id", "300", "--wait", "--json")
    run = json.loads(result.stdout)
    assert result.returncode == 0, run["error"]
    dataset = Path(run["artifacts"]["dataset"])
    labels = sorted((dataset / "labelsTr").glob("*.nii.gz")) + sorted((dataset / "labelsTs").glob("*.nii.gz"))
    metrics = run["metrics"]
    assert len(labels) == 160 and metrics["train"] == 128 and metrics["test"] == 32
    assert metrics["positive_cases"] == metrics["negative_cases"] == 80, "--negatives 1: as many as fractures"
    assert metrics["test_positive"] == metrics["test_negative"] == 16
    assert metrics["near_identical_groups"] == 1 and metrics["conflicting_groups"] == 0

    scores = {}
    fractured = {path.stem for path in (mini / "images" / "Fractured").glob("*.jpg")}
    for label_path in labels:
        case = label_path.name.removesuffix(".nii.gz")
        label = read_case(label_path).astype(bool)
        assert max(label.shape) == SIZE and label.any() == (case in fractured), f"{case}: {label.shape}"
        if case in fractured:
            scores[case] = iou(label, reference_label(mini / COCO_RELATIVE, f"{case}.jpg"))
    assert min(scores.values()) >= 0.5, sorted(scores.items(), key=lambda item: item[1])[:5]
    assert statistics.median(scores.values()) >= 0.8

    # IMG0002628 is stored 373x454 with an EXIF rotation; COCO (and its label) see it as 454x373.
    folder = "imagesTr" if (dataset / "imagesTr" / "IMG0002628_0000.nii.gz").exists() else "imagesTs"
    picture = read_case(dataset / folder / "IMG0002628_0000.nii.gz").astype(int)
    upright = ImageOps.exif_transpose(Image.open(mini / "images" / "Fractured" / "IMG0002628.jpg"))
    assert upright.size == (454, 373) and picture.shape == (421, 512), "upright, the aspect kept"
    expected = np.asarray(upright.convert("L").resize((512, 421), Image.Resampling.BICUBIC), int)
    assert np.abs(picture - expected).mean() < 4, "the picture is the EXIF-upright one"
    stored = np.asarray(Image.open(mini / "images" / "Fractured" / "IMG0002628.jpg").convert("L"), int)
    assert stored.shape != picture.shape
    assert scores["IMG0002628"] >= 0.5

    with open(run["artifacts"]["manifest"]) as handle:
        manifest = {row["case_id"]: row for row in csv.DictReader(handle)}
    first, second = (manifest[case] for case in NEAR_PAIR)
    assert first["group"] == second["group"] and first["split"] == second["split"], "the pair on one side"

    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(dataset), num_processes=2)  # raises on any problem

    cache = np.load(run["artifacts"]["classification_images"], mmap_mode="r")
    assert cache.shape == (160, SIZE, SIZE) and cache.dtype == np.uint8, "letterboxed on 512 squares"
    with open(run["artifacts"]["classification_labels"]) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 160 and sum(int(row["label"]) for row in rows) == 80
    quirky = next(row for row in rows if row["image_id"] == "IMG0003298.jpg")
    assert quirky["label"] == "1", "the label comes from the folder, not dataset.csv's fractured column"
    assert sum(1 for row in rows if "truncated" in row["warning"]) >= 5


def test_rasterisation_agrees_with_pycocotools_on_an_unscaled_polygon() -> None:
    polygon = [10.5, 10.5, 60.0, 12.0, 55.0, 70.0, 12.0, 50.0]
    from pycocotools import mask as mask_utils

    expected = mask_utils.decode(mask_utils.frPyObjects([polygon], 80, 80))[:, :, 0]
    assert np.array_equal(rasterize([polygon], 80, 80), expected)


def test_decoding_only_the_dc_scans_changes_no_pixel(mini: Path) -> None:
    """The ingest's shortcut for large progressive JPEGs gives exactly the full file's 1/8-scale picture."""
    import io

    from workers.imaging.jpeg_scans import dc_scans

    checked = 0
    for path in sorted((mini / "images").rglob("*.jpg")):
        with Image.open(path) as probe:
            if not probe.info.get("progressive") or min(probe.size) < 8 * DRAFT:
                continue
        data = path.read_bytes()
        reduced = dc_scans(data)
        if reduced is None:  # truncated: decoded the ordinary way
            continue
        assert len(reduced) < len(data) / 3
        full, fast = Image.open(io.BytesIO(data)), Image.open(io.BytesIO(reduced))
        full.draft("L", (DRAFT, DRAFT))
        fast.draft("L", (DRAFT, DRAFT))
        assert np.array_equal(np.asarray(full), np.asarray(fast)), path.name
        checked += 1
    assert checked >= 20
