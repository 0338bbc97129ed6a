"""Prediction's reader: radiographs as users hand them in, upright, bad ones named; and the working picture it
gives the model made by the ingest's own resize, so that prediction sees what training saw."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dicom_files import dicom_from
from PIL import Image

from shared.errors import InputError
from workers.imaging.pictures import load_picture
from workers.imaging.radiographs import read_radiograph

WORKING_SIZE = 64


def _picture() -> np.ndarray:
    rows, columns = np.mgrid[0:90, 0:150]
    return ((rows * 3 + columns * 5) % 256).astype(np.uint8)


def test_radiographs_are_read_upright_and_bad_ones_named(tmp_path: Path) -> None:
    picture = np.zeros((30, 50), np.uint8)
    picture[:, :10] = 255
    Image.fromarray(picture).save(tmp_path / "a.png")
    assert read_radiograph(tmp_path / "a.png").pixels.shape == (30, 50)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not really")
    with pytest.raises(InputError, match="bad.jpg cannot be read as a radiograph"):
        read_radiograph(tmp_path / "bad.jpg")


@pytest.mark.parametrize("square", [False, True])
def test_the_working_picture_is_the_ingest_s_for_png_and_dicom(tmp_path: Path, square: bool) -> None:
    png = tmp_path / "picture.png"
    Image.fromarray(_picture()).save(png)
    dicom = dicom_from(_picture(), tmp_path / "picture.dcm")
    for path in (png, dicom):
        ingested = load_picture(path, WORKING_SIZE, square=square).pixels
        predicted = read_radiograph(path).at_working_size(WORKING_SIZE, square)
        assert predicted.shape == ingested.shape == ((WORKING_SIZE, WORKING_SIZE) if square else (38, 64))
        assert np.array_equal(predicted, ingested), f"{path.name}: prediction's working picture is the ingest's"
