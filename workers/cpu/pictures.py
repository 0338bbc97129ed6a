"""Decode a radiograph to a square grayscale array, fast and with its quirks handled.

JPEG draft mode lets libjpeg decode at 1/2, 1/4 or 1/8 scale straight to grayscale, which is most of the
speed of an ingest; EXIF orientation is applied after the draft, so sizes are compared as COCO saw them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from workers.errors import InputError

EXIF_ORIENTATION = 0x0112
SWAPS_AXES = {5, 6, 7, 8}  # orientations that rotate by 90 or 270 degrees
JPEG_END = b"\xff\xd9"


@dataclass
class Picture:
    pixels: np.ndarray  # (size, size) uint8
    oriented_size: tuple[int, int]  # (width, height) after EXIF orientation, at full resolution
    warning: str | None


def _truncated(path: Path) -> bool:
    if path.suffix.lower() not in (".jpg", ".jpeg"):
        return False
    with path.open("rb") as handle:
        handle.seek(-2, 2)
        return handle.read(2) != JPEG_END


def load_picture(path: Path, size: int) -> Picture:
    """Read `path` as a `size` x `size` grayscale picture, upright as its EXIF tag says."""
    warning = "truncated JPEG (no end-of-image marker): decoded what the file holds" if _truncated(path) else None
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
            oriented = (height, width) if orientation in SWAPS_AXES else (width, height)
            image.draft("L", (size, size))
            image = _decode(image, tolerate_truncation=warning is not None)
            upright = ImageOps.exif_transpose(image).convert("L")
            pixels = np.asarray(upright.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0))
    except (OSError, SyntaxError, ValueError) as error:
        raise InputError(f"{path} cannot be decoded as an image ({error}); replace the file") from error
    return Picture(pixels, oriented, warning)


def _decode(image: Image.Image, tolerate_truncation: bool) -> Image.Image:
    # LOAD_TRUNCATED_IMAGES is module-wide in Pillow: set it only around this one decode.
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = tolerate_truncation
    try:
        image.load()
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous
    return image
