"""Decode a radiograph to a square grayscale array, fast and with its quirks handled.

JPEG draft mode lets libjpeg decode at 1/2, 1/4 or 1/8 scale straight to grayscale; at 1/8 a progressive
JPEG's high-frequency scans are dropped before decoding (jpeg_scans.py). EXIF orientation is applied
after the draft, so sizes are compared as COCO saw them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from workers.cpu.jpeg_scans import low_frequency_scans
from workers.errors import InputError

EXIF_ORIENTATION = 0x0112
SWAPS_AXES = {5, 6, 7, 8}  # orientations that rotate by 90 or 270 degrees
JPEG_END = b"\xff\xd9"
ONE_EIGHTH = 8  # draft mode decodes at 1/8 scale once both sides are 8x the output


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
    truncated = _truncated(path)
    warning = "truncated JPEG (no end-of-image marker): decoded what the file holds" if truncated else None
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
            progressive = bool(image.info.get("progressive"))
        oriented = (height, width) if orientation in SWAPS_AXES else (width, height)
        source: Path | io.BytesIO = path
        if progressive and not truncated and min(width, height) >= ONE_EIGHTH * size:
            reduced = low_frequency_scans(path.read_bytes())
            source = io.BytesIO(reduced) if reduced else path
        with Image.open(source) as image:
            image.draft("L", (size, size))
            image = _decode(image, tolerate_truncation=truncated)
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
