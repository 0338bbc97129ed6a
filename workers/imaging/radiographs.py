"""Radiographs as users hand them in for prediction: JPEG or PNG pictures (EXIF orientation applied), DICOM
pictures (as a viewer shows them: dicom.py) and 2D NIfTI cases, at full resolution; brought to the working
size by the ingest's own resize (pictures.py), so that the model sees what it saw in training."""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from shared.defaults import NIFTI_SUFFIXES
from shared.errors import InputError
from workers.files import read_regular_file
from workers.imaging.dicom import is_dicom, read_dicom
from workers.imaging.pictures import EXIF_ORIENTATION, at_working_size

MAX_PIXELS = 64_000_000  # as the ingest's cap; the release's largest radiograph has 6.6 million
NIFTI_HEADER_BYTES = 352


@dataclass(frozen=True)
class Radiograph:
    pixels: np.ndarray  # (rows, columns) uint8, upright, at full resolution: what masks and overlays are drawn on
    depth: np.ndarray | None = None  # a DICOM picture's float [0, 1] pixels: its full depth, for the resize
    # A JPEG or PNG without an EXIF turn: its file shows these very pixels (an annotation tool can take it as it is).
    as_stored: bool = False

    def at_working_size(self, working_size: int, square: bool) -> np.ndarray:
        """The picture as the ingest made its cases: (rows, columns) uint8 at `working_size`."""
        return at_working_size(self.pixels if self.depth is None else self.depth, working_size, square)


def read_radiograph(path: Path, max_pixels: int = MAX_PIXELS) -> Radiograph:
    """A JPEG or PNG (EXIF applied, grey), DICOM, or 2D NIfTI radiograph, upright.

    Read as untrusted: only a regular file, and nothing of more than `max_pixels` is decoded.
    """
    name = path.name.lower()
    data = read_regular_file(path, follow_links=True)  # the dispatcher resolved the links it was given
    if is_dicom(data):
        depth = read_dicom(data, path, max_pixels).pixels
        return Radiograph(np.rint(depth * 255).astype(np.uint8), depth)
    try:
        if name.endswith(NIFTI_SUFFIXES):
            return Radiograph(_nifti_pixels(path, data, max_pixels))
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > max_pixels:
                raise InputError(f"{path} is {image.width}x{image.height} pixels, over the cap of {max_pixels:,}")
            image.load()
            turned = image.getexif().get(EXIF_ORIENTATION, 1) != 1
            return Radiograph(np.asarray(ImageOps.exif_transpose(image).convert("L")), as_stored=not turned)
    except Image.DecompressionBombError:
        raise InputError(f"{path} declares more pixels than Pillow will decode (a decompression bomb)") from None
    except (OSError, UnidentifiedImageError, ValueError, zlib.error, nib.filebasedimages.ImageFileError) as error:
        raise InputError(f"{path} cannot be read as a radiograph ({error})") from error


def _nifti_pixels(path: Path, data: bytes, max_pixels: int) -> np.ndarray:
    if path.name.lower().endswith(".gz"):
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip; bounded, so a gzip bomb stops at the cap
        data = inflater.decompress(data, NIFTI_HEADER_BYTES + 8 * max_pixels + 1)
    image = nib.Nifti1Image.from_bytes(data)
    if int(np.prod(image.shape)) > max_pixels:
        raise InputError(f"{path} holds {int(np.prod(image.shape)):,} voxels, over the cap of {max_pixels:,}")
    volume = np.asarray(image.dataobj, dtype=np.float32)
    if volume.ndim == 3 and volume.shape[2] == 1:
        volume = volume[:, :, 0]
    if volume.ndim != 2:
        raise ValueError(f"a {volume.ndim}-D volume of shape {volume.shape}, not a 2D radiograph")
    pixels = volume.T  # NIfTI's x runs along columns (as ingest writes it)
    low, high = float(pixels.min()), float(pixels.max())
    scale = 255 / (high - low) if high > low else 0.0
    return ((pixels - low) * scale).astype(np.uint8)
