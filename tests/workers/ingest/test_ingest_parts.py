"""The ingest's parts on their own: split, masks, pictures, the synthetic release, the release reader."""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from shared.errors import InputError
from workers.imaging.jpeg_scans import dc_scans
from workers.imaging.pictures import load_picture
from workers.ingest.fracatlas import COCO_RELATIVE, read_fracatlas
from workers.ingest.masks import fracture_mask, rasterize
from workers.ingest.split import TEST, stratified_split


def test_split_of_the_full_release_size_gives_573_and_144() -> None:
    strata = {f"IMG{i:04d}": ("hand", "leg", "hip", "shoulder", "mixed")[i % 5] for i in range(717)}
    split = stratified_split(strata, 0.2, seed=7)
    counts = Counter(split.values())
    assert counts == {"train": 573, "test": 144}
    per_stratum = Counter(strata[case] for case, part in split.items() if part == TEST)
    assert max(per_stratum.values()) - min(per_stratum.values()) <= 1, "each region keeps its share"
    assert split == stratified_split(strata, 0.2, seed=7), "the same seed gives the same split"
    assert split != stratified_split(strata, 0.2, seed=8)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_split_rejects_a_fraction_outside_zero_and_one(fraction: float) -> None:
    with pytest.raises(InputError, match="--test-fraction"):
        stratified_split({"a": "hand", "b": "hand"}, fraction, 0)


def test_mask_is_the_scaled_union_of_polygons() -> None:
    square = [10.0, 10.0, 110.0, 10.0, 110.0, 110.0, 10.0, 110.0]  # 100x100 on a 400x200 picture
    other = [300.0, 150.0, 390.0, 150.0, 390.0, 190.0]
    mask = fracture_mask([square, other], width=400, height=200, out_width=100, out_height=100)
    assert mask.shape == (100, 100) and set(np.unique(mask)) == {0, 1}
    # x scales by 1/4, y by 1/2 (the notebook's squash): the square covers about 25 x 50 pixels.
    assert abs(int(mask[:60, :30].sum()) - 25 * 50) < 80
    assert mask[80:, 75:].any(), "the second polygon is in the union"
    kept = fracture_mask([square, other], width=400, height=200, out_width=100, out_height=50)
    assert abs(int(kept[:30, :30].sum()) - 25 * 25) < 60, "with the aspect kept the square stays square"


@pytest.mark.parametrize(("width", "height"), [(373, 454), (454, 373), (2304, 2880), (1760, 2140)])
def test_masks_at_the_working_size_match_pycocotools_on_the_scaled_polygons(width: int, height: int) -> None:
    from pycocotools import mask as mask_utils

    from workers.imaging.geometry import working_shape

    rng = np.random.default_rng(width)
    centre = np.array([width * 0.4, height * 0.6])
    angles = np.sort(rng.uniform(0, 2 * np.pi, 9))
    radius = rng.uniform(0.02, 0.08, 9) * min(width, height)
    polygon = np.c_[centre[0] + radius * np.cos(angles), centre[1] + radius * np.sin(angles)].ravel().tolist()
    out_width, out_height = working_shape(width, height, 512)
    assert max(out_width, out_height) == 512
    assert abs(out_width / out_height - width / height) <= 1 / min(out_width, out_height), "aspect within a pixel"
    mask = fracture_mask([polygon], width, height, out_width, out_height)
    scale = np.tile([out_width / width, out_height / height], 9)
    expected = mask_utils.decode(mask_utils.frPyObjects([(np.array(polygon) * scale).tolist()], out_height, out_width))
    assert mask.shape == (out_height, out_width) and np.array_equal(mask, expected[:, :, 0])


def test_a_sub_pixel_fracture_still_marks_its_pixels() -> None:
    sliver = [100.0, 100.0, 100.4, 100.0, 100.2, 100.3]
    assert rasterize([[v / 2000 * 64 for v in sliver]], 64, 64).sum() == 0, "too thin to rasterise"
    mask = fracture_mask([sliver], 2000, 2000, 64, 64)
    assert mask.sum() >= 1 and mask[3, 3] == 1


def test_synthetic_release_has_the_quirks_of_the_real_one(release: Callable[..., Path]) -> None:
    root = release(fractured=6, non_fractured=3)
    coco = json.loads((root / COCO_RELATIVE).read_text())
    assert coco["categories"] == [{"id": 0, "name": "fractured"}]
    per_image = Counter(annotation["image_id"] for annotation in coco["annotations"])
    assert max(per_image.values()) >= 3
    fractured = sorted((root / "images" / "Fractured").iterdir())
    modes = {Image.open(path).mode for path in fractured}
    assert modes == {"L", "RGB"}
    rotated = Image.open(fractured[0])
    assert rotated.getexif()[0x0112] == 6
    assert ImageOps.exif_transpose(rotated).size == (coco["images"][0]["width"], coco["images"][0]["height"])
    assert rotated.size != ImageOps.exif_transpose(rotated).size
    assert Image.open(fractured[1]).getexif()[0x0112] == 3
    truncated = sorted((root / "images" / "Non_fractured").iterdir())[0]
    assert not truncated.read_bytes().endswith(b"\xff\xd9")
    with (root / "dataset.csv").open() as handle:
        quirky = next(row for row in csv.DictReader(handle) if row["image_id"] == "IMG0000004.jpg")
    assert quirky["fractured"] == "0" and int(quirky["fracture_count"]) > 0, "the release's mislabelled row"


def test_pictures_are_upright_gray_and_truncation_is_a_warning(release: Callable[..., Path]) -> None:
    root = release(fractured=6, non_fractured=3)
    rotated = sorted((root / "images" / "Fractured").iterdir())[0]
    picture = load_picture(rotated, 64)
    upright = ImageOps.exif_transpose(Image.open(rotated)).convert("L")
    width, height = upright.size
    shape = (64, round(width * 64 / height)) if height > width else (round(height * 64 / width), 64)
    reference = upright.resize(shape[::-1], Image.Resampling.BILINEAR)
    assert picture.pixels.shape == shape and picture.pixels.dtype == np.uint8, "the long side 64, the aspect kept"
    assert np.abs(picture.pixels.astype(int) - np.asarray(reference, int)).mean() < 6
    assert picture.oriented_size == upright.size
    assert load_picture(rotated, 64, square=True).pixels.shape == (64, 64), "the notebook's squash, on request"
    truncated = load_picture(sorted((root / "images" / "Non_fractured").iterdir())[0], 64)
    assert truncated.warning and "truncated" in truncated.warning


@pytest.mark.parametrize(
    ("size", "channels", "options"),
    [
        ((2001, 1999), 1, {}),  # sides that are not a multiple of 8
        ((2304, 2880), 1, {"restart_marker_blocks": 7}),
        ((2304, 1800), 3, {"subsampling": 2}),  # colour, 4:2:0
        ((1850, 1850), 3, {"subsampling": 0, "restart_marker_rows": 1}),
    ],
)
def test_dc_scans_give_the_full_files_one_eighth_scale_picture(
    size: tuple[int, int], channels: int, options: dict
) -> None:
    rng = np.random.default_rng(sum(size))
    coarse = rng.integers(0, 256, (size[1] // 16 + 1, size[0] // 16 + 1, channels), dtype=np.uint8)
    picture = Image.fromarray(coarse.squeeze(axis=2) if channels == 1 else coarse).resize(
        size, Image.Resampling.BICUBIC
    )
    encoded = io.BytesIO()
    picture.save(encoded, "JPEG", progressive=True, quality=90, **options)
    data = encoded.getvalue()
    reduced = dc_scans(data)
    assert reduced is not None and len(reduced) < len(data) / 3
    full, fast = Image.open(io.BytesIO(data)), Image.open(io.BytesIO(reduced))
    for image in (full, fast):
        image.draft("L", (224, 224))
    assert fast.size == full.size == (math.ceil(size[0] / 8), math.ceil(size[1] / 8))
    assert np.array_equal(np.asarray(fast), np.asarray(full))


def test_dc_scans_leave_other_files_alone() -> None:
    encoded = io.BytesIO()
    Image.new("L", (64, 64)).save(encoded, "JPEG")  # baseline, not progressive
    assert dc_scans(encoded.getvalue()) is None
    encoded = io.BytesIO()
    Image.new("L", (64, 64)).save(encoded, "JPEG", progressive=True)
    assert dc_scans(encoded.getvalue()[:-200]) is None, "truncated inside a scan"
    assert dc_scans(b"not a jpeg") is None


def test_undecodable_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "IMG9.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(InputError, match="IMG9.jpg cannot be decoded"):
        load_picture(bad, 64)


def test_release_reader_takes_labels_from_folders(release: Callable[..., Path]) -> None:
    loaded = read_fracatlas(release(fractured=6, non_fractured=3))
    assert len(loaded.images) == 9 and len(loaded.fractured) == 6
    quirky = next(image for image in loaded.images if image.file_name == "IMG0000004.jpg")
    assert quirky.fractured and quirky.attributes["fractured"] == 0
    assert sum(len(segment["polygons"]) for image in loaded.fractured for segment in image.segments) > 6


def test_a_coco_file_with_a_utf8_bom_is_read(release: Callable[..., Path]) -> None:
    root = release(fractured=6, non_fractured=3)
    coco = root / COCO_RELATIVE
    coco.write_bytes(b"\xef\xbb\xbf" + coco.read_bytes())
    assert len(read_fracatlas(root).fractured) == 6


def test_a_link_to_a_picture_inside_the_release_is_read_by_its_real_path(release: Callable[..., Path]) -> None:
    root = release(fractured=6, non_fractured=3)
    others = sorted((root / "images" / "Non_fractured").iterdir())
    copy = root / "spare.jpg"
    others[0].rename(copy)
    others[0].symlink_to(copy)
    entry = next(image for image in read_fracatlas(root).images if image.file_name == others[0].name)
    assert entry.path == copy.resolve()
