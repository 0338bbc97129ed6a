"""COCO polygons -> a binary fracture mask at the picture's working size, rasterised by pycocotools."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


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
