"""2D cases as NIfTI the way nnU-Net reads them: a (x, y, 1) volume with unit spacing, gzip-compressed."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

AFFINE = np.eye(4)


def write_case(path: Path, pixels: np.ndarray) -> None:
    """Write a (rows, columns) array; rows run along NIfTI's y axis. Written under a temporary name first."""
    volume = np.ascontiguousarray(pixels.T[:, :, None])
    image = nib.Nifti1Image(volume, AFFINE)
    image.header.set_data_dtype(pixels.dtype)
    tmp = path.with_name(f".{path.name}.tmp.nii.gz")
    nib.save(image, tmp)
    os.replace(tmp, path)


def read_case(path: Path) -> np.ndarray:
    """The inverse of write_case: a (rows, columns) array."""
    return np.asarray(nib.load(path).dataobj)[:, :, 0].T
