"""The working size of a picture and the square it sits in.

A picture keeps its aspect ratio: its long side becomes the working size, its short side follows
(docs/ingest.md says why 512). The notebook's layout, every picture squashed into a square, is one option
away. Where a fixed shape is needed (the classification cache, a batch), the picture is letterboxed: centred
on a black square of the working size, never stretched.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def working_shape(width: int, height: int, working_size: int, square: bool = False) -> tuple[int, int]:
    """(width, height) at the working size: the long side `working_size`, the short one in proportion (at
    least 1); `square`: a square of that side whatever the picture's shape (the notebook's squash)."""
    if square:
        return working_size, working_size
    if width >= height:
        return working_size, max(1, round(height * working_size / width))
    return max(1, round(width * working_size / height)), working_size


def resized(image: Image.Image, target: tuple[int, int]) -> Image.Image:
    """`image` at `target` (width, height): enlarged with a bicubic filter, shrunk with a bilinear one."""
    if image.width < target[0] or image.height < target[1]:
        return image.resize(target, Image.Resampling.BICUBIC)
    return image.resize(target, Image.Resampling.BILINEAR, reducing_gap=2.0)


def letterbox_offset(rows: int, columns: int, size: int) -> tuple[int, int]:
    """Where a (rows, columns) picture's top-left corner sits on a size x size square (centred)."""
    return (size - rows) // 2, (size - columns) // 2


def letterbox(pixels: np.ndarray, size: int) -> np.ndarray:
    """`pixels` (rows, columns), at most size x size, centred on a size x size square of zeros."""
    rows, columns = pixels.shape
    if rows > size or columns > size:
        raise ValueError(f"a {rows}x{columns} picture does not fit a {size} square")
    top, left = letterbox_offset(rows, columns, size)
    square = np.zeros((size, size), dtype=pixels.dtype)
    square[top : top + rows, left : left + columns] = pixels
    return square


def unletterbox(square: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """The (rows, columns) picture that `letterbox` put on `square`."""
    top, left = letterbox_offset(rows, columns, square.shape[0])
    return square[top : top + rows, left : left + columns]
