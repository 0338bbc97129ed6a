"""Radiographs as users hand them in: JPEG or PNG pictures (EXIF orientation applied) and 2D NIfTI cases."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from workers.errors import InputError

PICTURE_SUFFIXES = (".jpg", ".jpeg", ".png")
NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_radiograph_file(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(PICTURE_SUFFIXES) or name.endswith(NIFTI_SUFFIXES)


def read_radiograph(path: Path) -> np.ndarray:
    """(rows, columns) uint8, upright: JPEG or PNG (EXIF applied, grey), or a 2D NIfTI case."""
    name = path.name.lower()
    try:
        if name.endswith(NIFTI_SUFFIXES):
            volume = np.asarray(nib.load(path).dataobj, dtype=np.float32)
            if volume.ndim == 3 and volume.shape[2] == 1:
                volume = volume[:, :, 0]
            if volume.ndim != 2:
                raise ValueError(f"a {volume.ndim}-D volume of shape {volume.shape}, not a 2D radiograph")
            pixels = volume.T  # NIfTI's x runs along columns (as ingest writes it)
            low, high = float(pixels.min()), float(pixels.max())
            scale = 255 / (high - low) if high > low else 0.0
            return ((pixels - low) * scale).astype(np.uint8)
        with Image.open(path) as image:
            image.load()
            return np.asarray(ImageOps.exif_transpose(image).convert("L"))
    except (OSError, UnidentifiedImageError, ValueError, nib.filebasedimages.ImageFileError) as error:
        raise InputError(f"{path} cannot be read as a radiograph ({error})") from error
