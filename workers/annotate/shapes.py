"""A predicted mask -> the shapes an annotation tool draws: one per connected region of a category, a polygon
traced along the pixels' edges, its holes joined to it by zero-width cuts, so that one polygon holds a ring.
pycocotools draws such a polygon back as exactly the region's pixels (tests/workers/annotate/)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils
from scipy import ndimage
from skimage import measure

# Outlines are traced on the region drawn this many times larger, so that a corner is cut by an eighth of a
# pixel rather than half of one: the outline then holds exactly the region's pixels, thin fractures too.
TRACE_SCALE = 4
# How far (pixels) a simplified outline may stray from the traced one: fewer points, the same pixels.
SIMPLIFY_TOLERANCE = 0.1
# An annotator cannot use more shapes than this on one picture (a weak model's speckle can give hundreds), and
# the corrected export must come back under the ingest's cap (INGEST_MAX_POLYGONS_PER_IMAGE, 256): past a
# category's share of it, its smallest regions go together as one shape.
MAX_SHAPES_PER_PICTURE = 64


@dataclass(frozen=True)
class Shape:
    """One region of one category, in pixels of the picture (COCO's frame: a pixel's centre at +0.5)."""

    category: str
    polygon: list[float]  # x0, y0, x1, y1, ...
    area: int  # the region's pixels
    bbox: tuple[int, int, int, int]  # x, y, width, height

    def points(self) -> list[tuple[float, float]]:
        return list(zip(self.polygon[0::2], self.polygon[1::2], strict=True))


def traced_shapes(labels: np.ndarray, categories: list[str]) -> list[Shape]:
    """Every region of every category of a (rows, columns) label map (0 background, k the k-th category); a
    category's regions past its share of MAX_SHAPES_PER_PICTURE go, the smallest, as one shape."""
    share = max(1, MAX_SHAPES_PER_PICTURE // len(categories))
    shapes = []
    for index, category in enumerate(categories, start=1):
        regions, count = ndimage.label(labels == index)
        if count > share:
            sizes = ndimage.sum_labels(np.ones_like(regions), regions, range(1, count + 1))
            smallest = np.argsort(-sizes, kind="stable")[share - 1 :] + 1
            regions[np.isin(regions, smallest)] = smallest[0]
        for number, box in enumerate(ndimage.find_objects(regions), start=1):
            if box is not None:
                shapes.append(_shape(category, regions[box] == number, box))
    return shapes


def rasterised(shapes: list[Shape], category: str, rows: int, columns: int) -> np.ndarray:
    """The union of a category's shapes as a (rows, columns) 0/1 mask, drawn by pycocotools as a tool reads
    them."""
    mask = np.zeros((rows, columns), np.uint8)
    for shape in shapes:
        if shape.category == category:
            mask |= _drawn(shape.polygon, rows, columns)
    return mask


def _shape(category: str, cropped: np.ndarray, box: tuple[slice, slice]) -> Shape:
    """A region, given cropped to its box."""
    top, left = box[0].start, box[1].start
    polygon = [value for x, y in _outline(cropped) for value in (x + left, y + top)]
    bbox = (left, top, box[1].stop - left, box[0].stop - top)
    return Shape(category, polygon, int(cropped.sum()), bbox)


def _outline(region: np.ndarray) -> list[tuple[float, float]]:
    """A region's traced edges as one polygon, in its own frame. Traced at one half between pixel centres,
    an edge runs along the pixels' edges (corners cut by 1/(2 TRACE_SCALE) of a pixel). The longest edge comes
    first; every other edge (a hole, or another part of a merged shape) is reached from its first point by a
    cut walked there and back, which adds no pixel to the fill (even-odd and non-zero alike: a hole's edge
    runs the other way round)."""
    larger = np.kron(region.astype(np.float32), np.ones((TRACE_SCALE, TRACE_SCALE), np.float32))
    edges = sorted(measure.find_contours(np.pad(larger, 1), 0.5), key=len, reverse=True)
    outline: list[tuple[float, float]] = []
    for edge in edges:
        simplified = measure.approximate_polygon(edge, SIMPLIFY_TOLERANCE * TRACE_SCALE)[:-1]  # last = first
        # Padded by one pixel of the larger picture: its edge at p - 0.5 is (p - 0.5) / TRACE_SCALE here.
        points = [
            (round((float(col) - 0.5) / TRACE_SCALE, 3), round((float(row) - 0.5) / TRACE_SCALE, 3))
            for row, col in simplified
        ]
        outline += [outline[0], *points, points[0]] if outline else points  # closed by the tool's last edge
    return outline


def _drawn(polygon: list[float], rows: int, columns: int) -> np.ndarray:
    return mask_utils.decode(mask_utils.frPyObjects([polygon], rows, columns))[:, :, 0]
