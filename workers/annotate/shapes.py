"""A predicted mask -> the shapes an annotation tool draws: one per connected region of a category, a polygon
traced along the pixels' edges, or COCO RLE where a polygon would lose the region (a hole, a ring)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from scipy import ndimage
from skimage import measure

# A polygon must cover its region this well (intersection over union), or the region goes as RLE.
POLYGON_MIN_IOU = 0.98
# Outlines are traced on the region drawn this many times larger, so that a corner is cut by an eighth of a
# pixel rather than half of one: the outline then holds exactly the region's pixels, thin fractures too.
TRACE_SCALE = 4
# How far (pixels) a simplified outline may stray from the traced one: fewer points, the same pixels.
SIMPLIFY_TOLERANCE = 0.1


@dataclass(frozen=True)
class Shape:
    """One region of one category, in pixels of the picture (COCO's frame: a pixel's centre at +0.5)."""

    category: str
    polygon: list[float] | None  # x0, y0, x1, y1, ...; None where the region goes as RLE
    rle: dict[str, Any] | None  # COCO compressed RLE, counts as text
    area: int  # the region's pixels
    bbox: tuple[int, int, int, int]  # x, y, width, height

    def points(self) -> list[tuple[float, float]]:
        """The outline as (x, y) pairs: the polygon, or for an RLE region its outer edge (a tool without
        RLE still gets the region, its holes filled)."""
        if self.polygon is not None:
            return list(zip(self.polygon[0::2], self.polygon[1::2], strict=True))
        filled = ndimage.binary_fill_holes(self.mask())
        left, top, width, height = self.bbox
        return [(x + left, y + top) for x, y in _outline(filled[top : top + height, left : left + width])]

    def mask(self) -> np.ndarray:
        assert self.rle is not None
        return mask_utils.decode({"size": self.rle["size"], "counts": self.rle["counts"].encode()})


def traced_shapes(labels: np.ndarray, categories: list[str]) -> list[Shape]:
    """Every region of every category of a (rows, columns) label map (0 background, k the k-th category)."""
    shapes = []
    for index, category in enumerate(categories, start=1):
        regions, _count = ndimage.label(labels == index)
        for number, box in enumerate(ndimage.find_objects(regions), start=1):
            if box is not None:
                shapes.append(_shape(category, regions[box] == number, box, labels.shape))
    return shapes


def rasterised(shapes: list[Shape], category: str, rows: int, columns: int) -> np.ndarray:
    """The union of a category's shapes as a (rows, columns) 0/1 mask, drawn by pycocotools as a tool reads
    them."""
    mask = np.zeros((rows, columns), np.uint8)
    for shape in shapes:
        if shape.category == category:
            mask |= _drawn(shape.polygon, rows, columns) if shape.polygon is not None else shape.mask()
    return mask


def _shape(category: str, cropped: np.ndarray, box: tuple[slice, slice], size: tuple[int, int]) -> Shape:
    """A region, given cropped to its box, of a picture of `size` (rows, columns)."""
    top, left = box[0].start, box[1].start
    region = np.zeros(size, np.uint8)
    region[box] = cropped
    bbox = (left, top, box[1].stop - left, box[0].stop - top)
    outline = [(x + left, y + top) for x, y in _outline(cropped)]
    polygon = [value for point in outline for value in point]
    area = int(cropped.sum())
    if len(outline) >= 3 and _iou(_drawn(polygon, *size), region) >= POLYGON_MIN_IOU:
        return Shape(category, polygon, None, area, bbox)
    rle = mask_utils.encode(np.asfortranarray(region))
    return Shape(category, None, {"size": list(rle["size"]), "counts": rle["counts"].decode()}, area, bbox)


def _outline(region: np.ndarray) -> list[tuple[float, float]]:
    """The longest traced edge of a region, simplified, in its own frame. Traced at one half between pixel
    centres, it runs along the pixels' edges (corners cut by 1/(2 TRACE_SCALE) of a pixel)."""
    larger = np.kron(region.astype(np.float32), np.ones((TRACE_SCALE, TRACE_SCALE), np.float32))
    contours = measure.find_contours(np.pad(larger, 1), 0.5)
    if not contours:
        return []
    longest = max(contours, key=len)
    simplified = measure.approximate_polygon(longest, SIMPLIFY_TOLERANCE * TRACE_SCALE)[:-1]  # closed: last = first
    # Padded by one pixel of the larger picture: its edge at p - 0.5 is (p - 0.5) / TRACE_SCALE here.
    return [
        (round((float(col) - 0.5) / TRACE_SCALE, 3), round((float(row) - 0.5) / TRACE_SCALE, 3))
        for row, col in simplified
    ]


def _drawn(polygon: list[float], rows: int, columns: int) -> np.ndarray:
    return mask_utils.decode(mask_utils.frPyObjects([polygon], rows, columns))[:, :, 0]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
