"""COCO masks (polygons or RLE) -> a picture's label map at its working size, rasterised by pycocotools."""

from __future__ import annotations

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from workers.ingest.coco import Segment


def scaled_polygons(
    polygons: list[list[float]], width: int, height: int, out_width: int, out_height: int
) -> list[list[float]]:
    """Scale polygons drawn on a width x height picture to an out_width x out_height one (the notebook
    forgot this)."""
    sx, sy = out_width / width, out_height / height
    return [[v * (sx if i % 2 == 0 else sy) for i, v in enumerate(polygon)] for polygon in polygons]


def rasterize(polygons: list[list[float]], width: int, height: int) -> np.ndarray:
    """The union of all polygons as a (height, width) uint8 mask of 0 and 1."""
    if not polygons:
        return np.zeros((height, width), np.uint8)
    rles = mask_utils.frPyObjects(polygons, height, width)
    return (mask_utils.decode(mask_utils.merge(rles)) > 0).astype(np.uint8)


def fracture_mask(polygons: list[list[float]], width: int, height: int, out_width: int, out_height: int) -> np.ndarray:
    """The (out_height, out_width) mask of polygons drawn on a width x height picture."""
    scaled = scaled_polygons(polygons, width, height, out_width, out_height)
    mask = rasterize(scaled, out_width, out_height)
    if scaled and not mask.any():
        # A fracture thinner than a pixel at this size still marks the pixels its points fall in.
        for polygon in scaled:
            xs = np.clip(np.floor(polygon[0::2]).astype(int), 0, out_width - 1)
            ys = np.clip(np.floor(polygon[1::2]).astype(int), 0, out_height - 1)
            mask[ys, xs] = 1
    return mask


def rle_mask(rle: dict, out_width: int, out_height: int) -> np.ndarray:
    """An RLE's (out_height, out_width) 0/1 mask: decoded at its own size and resized (bilinear, cut at one
    half, where a polygon's edge would fall)."""
    if isinstance(rle["counts"], list):
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    else:
        rle = {"size": rle["size"], "counts": rle["counts"].encode()}
    full = mask_utils.decode(rle)
    if full.shape == (out_height, out_width):
        return full.astype(np.uint8)
    resized = Image.fromarray(full * 255).resize((out_width, out_height), Image.Resampling.BILINEAR)
    return (np.asarray(resized) >= 128).astype(np.uint8)


def label_mask(
    segments: list[Segment], width: int, height: int, out_width: int, out_height: int
) -> tuple[np.ndarray, int]:
    """The (out_height, out_width) label map of a picture's segments and how many pixels two labels claimed:
    each label's segments unioned, a later label drawn over an earlier one."""
    mask = np.zeros((out_height, out_width), np.uint8)
    contested = 0
    for label in sorted({segment["label"] for segment in segments}):
        mine = [segment for segment in segments if segment["label"] == label]
        polygons = [polygon for segment in mine for polygon in segment.get("polygons", [])]
        drawn = fracture_mask(polygons, width, height, out_width, out_height)
        for segment in mine:
            if "rle" in segment:
                drawn |= rle_mask(segment["rle"], out_width, out_height)
        claimed = drawn.astype(bool)
        contested += int((claimed & (mask > 0)).sum())
        mask[claimed] = label
    return mask, contested
