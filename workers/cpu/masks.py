"""COCO polygons -> a binary fracture mask at the output size, rasterised by pycocotools."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def scaled_polygons(polygons: list[list[float]], width: int, height: int, size: int) -> list[list[float]]:
    """Scale polygons drawn on a width x height picture to a size x size one (the notebook forgot this)."""
    sx, sy = size / width, size / height
    return [[v * (sx if i % 2 == 0 else sy) for i, v in enumerate(polygon)] for polygon in polygons]


def rasterize(polygons: list[list[float]], width: int, height: int) -> np.ndarray:
    """The union of all polygons as a (height, width) uint8 mask of 0 and 1."""
    if not polygons:
        return np.zeros((height, width), np.uint8)
    rles = mask_utils.frPyObjects(polygons, height, width)
    return (mask_utils.decode(mask_utils.merge(rles)) > 0).astype(np.uint8)


def fracture_mask(polygons: list[list[float]], width: int, height: int, size: int) -> np.ndarray:
    scaled = scaled_polygons(polygons, width, height, size)
    mask = rasterize(scaled, size, size)
    if not mask.any():
        # A fracture thinner than a pixel at this size still marks the pixels its points fall in.
        for polygon in scaled:
            xs = np.clip(np.floor(polygon[0::2]).astype(int), 0, size - 1)
            ys = np.clip(np.floor(polygon[1::2]).astype(int), 0, size - 1)
            mask[ys, xs] = 1
    return mask
