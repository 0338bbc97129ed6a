"""The COCO reader's choices on a small hand-made release, without the stack: which pictures are positive,
which are nnU-Net cases, --categories, --positive, --labels, --coco and --images, and a compressed RLE's
mask against pycocotools' own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from shared.contract import IngestRequest
from shared.errors import InputError
from workers.ingest.masks import label_mask
from workers.ingest.reader import read_release

SIDE = 40
SQUARE = [5.0, 5.0, 25.0, 5.0, 25.0, 25.0, 5.0, 25.0]


def compressed(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def blob() -> np.ndarray:
    mask = np.zeros((SIDE, SIDE), np.uint8)
    mask[12:30, 8:21] = 1
    return mask


def make_release(root: Path) -> Path:
    """a: a fracture polygon; b: a plate only; c: a fracture box only; d: nothing; f: a fracture as a
    compressed RLE; e is on disk but not in the COCO file."""
    (root / "pictures").mkdir(parents=True)
    for name in "abcdef":
        Image.new("L", (SIDE, SIDE), 90).save(root / "pictures" / f"{name}.png")
    images = [{"id": i, "file_name": f"{name}.png", "width": SIDE, "height": SIDE} for i, name in enumerate("abcdf")]
    annotations = [
        {"id": 1, "image_id": 0, "category_id": 0, "segmentation": [SQUARE], "bbox": [5, 5, 20, 20]},
        {"id": 2, "image_id": 1, "category_id": 2, "segmentation": [SQUARE], "bbox": [5, 5, 20, 20]},
        {"id": 3, "image_id": 2, "category_id": 0, "segmentation": [], "bbox": [5, 5, 20, 20]},
        {"id": 4, "image_id": 4, "category_id": 0, "segmentation": compressed(blob()), "iscrowd": 1},
    ]
    categories = [{"id": 0, "name": "fracture"}, {"id": 2, "name": "plate"}]
    coco = root / "labels" / "export.json"
    coco.parent.mkdir()
    coco.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return coco


def read(root: Path, **options: object):  # noqa: ANN201 - a Release
    return read_release(root, IngestRequest(source=str(root), **options))


def by_name(release) -> dict:  # noqa: ANN001
    return {Path(image.file_name).stem: image for image in release.images}


def test_categories_positive_labels_and_cases(tmp_path: Path) -> None:
    coco = make_release(tmp_path)
    release = read(tmp_path, coco=str(coco), images=str(tmp_path / "pictures"))
    assert release.labels == ["fracture", "plate"] and release.layout == "coco"
    images = by_name(release)
    assert [images[n].fractured for n in "abcdf"] == [True, True, True, False, True], "any annotation, boxes too"
    assert images["c"].box_only and not images["c"].segments
    assert images["b"].segments[0]["label"] == 2

    labels_csv = tmp_path / "labels.csv"
    labels_csv.write_text("file_name,label\nd.png,yes\ne.png,0\n")
    chosen = read(
        tmp_path, coco=str(coco), images=str(tmp_path / "pictures"), categories="fracture", positive="plate",
        labels=str(labels_csv),
    )  # fmt: skip
    images = by_name(chosen)
    assert chosen.labels == ["fracture"] and not images["b"].segments, "plate is no label now"
    assert images["b"].fractured and not images["a"].fractured, "--positive plate: only b (and d, by the CSV)"
    assert images["d"].fractured and not images["e"].fractured and images["e"].coco_size is None, "e added"
    assert any("not in labels.csv" in warning for warning in chosen.warnings)


def test_a_compressed_rle_is_drawn_as_pycocotools_decodes_it(tmp_path: Path) -> None:
    coco = make_release(tmp_path)
    image = by_name(read(tmp_path, coco=str(coco), images=str(tmp_path / "pictures")))["f"]
    mask, contested = label_mask(image.segments, SIDE, SIDE, SIDE, SIDE)
    assert np.array_equal(mask, blob()) and contested == 0
    smaller, _ = label_mask(image.segments, SIDE, SIDE, SIDE // 2, SIDE // 2)
    assert smaller.shape == (SIDE // 2, SIDE // 2) and abs(int(smaller.sum()) * 4 - int(blob().sum())) < 40


def test_the_pictures_are_found_without_images_and_refused_when_missing(tmp_path: Path) -> None:
    coco = make_release(tmp_path)
    with pytest.raises(InputError, match="names a.png, but no such file exists under"):
        read(tmp_path, coco=str(coco))  # the pictures are under pictures/, which no candidate names
    (tmp_path / "pictures").rename(tmp_path / "images")
    assert len(read(tmp_path, coco=str(coco)).images) == 5, "found under images/"
    with pytest.raises(InputError, match="--categories names 'screw'"):
        read(tmp_path, coco=str(coco), categories="screw")
    with pytest.raises(InputError, match="--coco applies to a COCO release"):
        read(tmp_path, coco=str(coco), format="fracatlas")


def test_an_export_with_fracatlas_folder_names_is_read_as_coco(tmp_path: Path) -> None:
    from workers.ingest.fracatlas import is_fracatlas

    for folder in ("Fractured", "Non_fractured"):
        (tmp_path / "images" / folder).mkdir(parents=True)
    assert is_fracatlas(tmp_path), "the archive's folders, its COCO file missing: FracAtlas (and refused as such)"
    (tmp_path / "annotations.json").write_text("{}")
    assert not is_fracatlas(tmp_path), "an export's COCO file beside them: COCO"
