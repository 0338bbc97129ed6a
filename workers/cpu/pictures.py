"""Decode a radiograph to a square grayscale array, fast and with its quirks handled.

JPEG draft mode lets libjpeg decode at 1/2, 1/4 or 1/8 scale straight to grayscale; at 1/8 only a
progressive JPEG's DC scans are decoded (jpeg_scans.py). EXIF orientation is applied after the draft, so
sizes are compared as COCO saw them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from workers.cpu.jpeg_scans import dc_scans
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


def load_picture(path: Path, size: int) -> Picture:
    """Read `path` as a `size` x `size` grayscale picture, upright as its EXIF tag says."""
    try:
        data = path.read_bytes()  # one read: opening files is a large share of a small picture's cost
    except OSError as error:
        raise InputError(f"{path} cannot be read ({error}); check the file and its permissions") from error
    truncated = path.suffix.lower() in (".jpg", ".jpeg") and not data.endswith(JPEG_END)
    warning = "truncated JPEG (no end-of-image marker): decoded what the file holds" if truncated else None
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        oriented = (height, width) if image.getexif().get(EXIF_ORIENTATION, 1) in SWAPS_AXES else (width, height)
        if image.info.get("progressive") and not truncated and min(width, height) >= ONE_EIGHTH * size:
            reduced = dc_scans(data)
            if reduced:
                image.close()
                image = Image.open(io.BytesIO(reduced))
        with image:
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
