"""Decode a radiograph to a grayscale array at its working size, fast and with its quirks handled.

JPEG draft mode lets libjpeg decode at 1/2, 1/4 or 1/8 scale straight to grayscale; at 1/8 only a
progressive JPEG's DC scans are decoded (jpeg_scans.py). EXIF orientation is applied after the draft, so
sizes are compared as COCO saw them.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from shared.errors import InputError
from workers.files import read_regular_file
from workers.imaging.dicom import DicomPicture, is_dicom, read_dicom
from workers.imaging.geometry import resized, working_shape
from workers.imaging.jpeg_scans import dc_scans

EXIF_ORIENTATION = 0x0112
SWAPS_AXES = {5, 6, 7, 8}  # orientations that rotate by 90 or 270 degrees
JPEG_END = b"\xff\xd9"
ONE_EIGHTH = 8  # draft mode decodes at 1/8 scale once both sides are 8x the output

# Enlarges an upright picture smaller than the working size to its target (width, height), and says how:
# the ingest's --upscale (workers/superres/upscale.py).
Enlarge = Callable[[Image.Image, tuple[int, int]], tuple[np.ndarray, str]]


@dataclass
class Picture:
    pixels: np.ndarray  # (rows, columns) uint8 at the working size
    oriented_size: tuple[int, int]  # (width, height) after EXIF orientation, at full resolution
    warning: str | None
    upscaled: str = ""  # how a picture smaller than the working size was enlarged (Enlarge)
    spacing_mm: tuple[float, float] | None = None  # a DICOM picture's (row, column) pixel spacing


def _swaps_axes(image: Image.Image) -> bool:
    return image.getexif().get(EXIF_ORIENTATION, 1) in SWAPS_AXES


def upright_size(path: Path) -> tuple[int, int]:
    """(width, height) of a picture after its EXIF orientation, from its header (a COCO entry's size)."""
    with Image.open(path) as image:
        width, height = image.size
        return (height, width) if _swaps_axes(image) else (width, height)


def load_picture(
    path: Path, working_size: int, max_pixels: int = 64_000_000, square: bool = False, upscaler: Enlarge | None = None
) -> Picture:
    """Read `path` as a grayscale picture whose long side is `working_size` (aspect ratio kept; `square`:
    squashed to a square of that side, the notebook's layout), upright as its EXIF tag says (resized as
    geometry.resized says; a picture smaller than that enlarged by `upscaler`, where given).

    A picture of more than `max_pixels` is refused from its header, before anything is decoded.
    """
    data = read_regular_file(path)
    if is_dicom(data):
        return _dicom_picture(read_dicom(data, path, max_pixels), working_size, square, upscaler)
    truncated = path.suffix.lower() in (".jpg", ".jpeg") and not data.endswith(JPEG_END)
    warning = "truncated JPEG (no end-of-image marker): decoded what the file holds" if truncated else None
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > max_pixels:
            raise InputError(
                f"{path} is {width}x{height} pixels, over the cap of {max_pixels / 1e6:g} million "
                "(INGEST_MAX_PIXELS); a radiograph of the release has 6.6 million: replace the file"
            )
        swaps = _swaps_axes(image)
        oriented = (height, width) if swaps else (width, height)
        target = working_shape(*oriented, working_size, square)
        stored_target = target[::-1] if swaps else target  # what the draft sees: the picture as stored
        eighth = all(side >= ONE_EIGHTH * want for side, want in zip((width, height), stored_target, strict=True))
        if image.info.get("progressive") and not truncated and eighth:
            reduced = dc_scans(data)
            if reduced:
                image.close()
                image = Image.open(io.BytesIO(reduced))
        with image:
            image.draft("L", stored_target)
            image = _decode(image, tolerate_truncation=truncated)
            upright = ImageOps.exif_transpose(image).convert("L")
            upscaled = ""
            if upscaler is not None and (upright.width < target[0] or upright.height < target[1]):
                pixels, upscaled = upscaler(upright, target)
            else:
                pixels = np.asarray(resized(upright, target))
    except Image.DecompressionBombError:
        raise InputError(
            f"{path} declares more pixels than Pillow will decode (a decompression bomb); replace the file"
        ) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise InputError(f"{path} cannot be decoded as an image ({error}); replace the file") from error
    return Picture(pixels, oriented, warning, upscaled)


def _dicom_picture(dicom: DicomPicture, working_size: int, square: bool, upscaler: Enlarge | None) -> Picture:
    """A DICOM picture at the working size: resized from its full depth (float), then made 8-bit."""
    rows, columns = dicom.pixels.shape
    target = working_shape(columns, rows, working_size, square)
    upscaled = ""
    if upscaler is not None and (columns < target[0] or rows < target[1]):
        grey = Image.fromarray(np.rint(dicom.pixels * 255).astype(np.uint8))
        pixels, upscaled = upscaler(grey, target)
    else:
        pixels = at_working_size(dicom.pixels, working_size, square)
    return Picture(pixels, (columns, rows), None, upscaled, dicom.spacing_mm)


def at_working_size(pixels: np.ndarray, working_size: int, square: bool) -> np.ndarray:
    """A full-resolution upright picture as (rows, columns) uint8 at the working size: 8-bit pixels resized, or
    a DICOM picture's float [0, 1] pixels resized at their full depth and only then made 8-bit. The ingest's
    cases and prediction's inputs both come through here (a JPEG's draft decode aside, a speed-up of the same
    resize)."""
    rows, columns = pixels.shape
    target = working_shape(columns, rows, working_size, square)
    if pixels.dtype == np.uint8:
        return np.asarray(resized(Image.fromarray(pixels), target))
    working = np.asarray(resized(Image.fromarray(pixels.astype(np.float32), "F"), target))
    return np.rint(np.clip(working, 0, 1) * 255).astype(np.uint8)


def _decode(image: Image.Image, tolerate_truncation: bool) -> Image.Image:
    # LOAD_TRUNCATED_IMAGES is module-wide in Pillow: set it only around this one decode.
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = tolerate_truncation
    try:
        image.load()
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous
    return image
