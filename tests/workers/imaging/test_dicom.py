"""DICOM radiographs read as a viewer shows them, written by the tests from a mini-set picture in each way a
modality stores one; and hostile DICOM refused by name, quickly, before any pixel is decoded."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_files import HOSTILE as ARCHIVE_HOSTILE
from dicom_files import PATIENT, dicom_from
from PIL import Image, ImageOps
from pydicom.encaps import encapsulate
from pydicom.uid import HTJ2KLossless, JPEG2000Lossless

from shared.defaults import is_radiograph_file
from shared.errors import InputError
from workers.imaging.dicom import read_dicom
from workers.imaging.pictures import load_picture
from workers.imaging.radiographs import read_radiograph

CAP = 64_000_000
VARIANTS = {
    "MONOCHROME2, window": {},
    "MONOCHROME1, window": {"photometric": "MONOCHROME1"},
    "VOI LUT": {"voi": "lut"},
    "JPEG 2000": {"codec": "jpeg2000"},
    "JPEG 2000, MONOCHROME1, VOI LUT": {"codec": "jpeg2000", "photometric": "MONOCHROME1", "voi": "lut"},
    "JPEG Lossless": {"codec": "jpeg-lossless"},
    "RLE Lossless, MONOCHROME1": {"codec": "rle", "photometric": "MONOCHROME1"},
}


@pytest.fixture(scope="module")
def grey(mini: Path) -> np.ndarray:
    picture = sorted((mini / "images" / "Fractured").glob("*.jpg"))[3]
    with Image.open(picture) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("L"))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_way_of_storing_shows_the_same_picture(variant: str, grey: np.ndarray, tmp_path: Path) -> None:
    path = dicom_from(grey, tmp_path / "picture.dcm", **VARIANTS[variant])
    picture = read_dicom(path.read_bytes(), path, CAP)
    assert picture.bits_stored == 12 and picture.spacing_mm == (0.143, 0.143)
    assert np.abs(picture.pixels * 255 - grey).max() <= 1, "the stored 12 bits, through the LUTs, are the picture"
    assert np.abs(read_radiograph(path).pixels.astype(int) - grey).max() <= 1, "predict reads it the same way"


def test_the_working_picture_equals_the_png_s(grey: np.ndarray, tmp_path: Path) -> None:
    png = tmp_path / "picture.png"
    Image.fromarray(grey).save(png)
    dicom = dicom_from(grey, tmp_path / "picture", photometric="MONOCHROME1")  # no extension
    assert is_radiograph_file(dicom) and not is_radiograph_file(tmp_path / "notes")
    from_png, from_dicom = load_picture(png, 256), load_picture(dicom, 256)
    assert from_dicom.pixels.shape == from_png.pixels.shape and from_dicom.oriented_size == from_png.oriented_size
    assert np.abs(from_dicom.pixels.astype(int) - from_png.pixels).max() <= 2
    assert from_dicom.spacing_mm == (0.143, 0.143) and from_png.spacing_mm is None


def _edited(grey: np.ndarray, folder: Path, change: object) -> Path:
    path = dicom_from(grey[:64, :64], folder / "hostile.dcm")
    dataset = pydicom.dcmread(path)
    change(dataset)  # type: ignore[operator]
    dataset.save_as(path)
    return path


def _truncated(grey: np.ndarray, folder: Path) -> Path:
    path = dicom_from(grey[:64, :64], folder / "hostile.dcm")
    path.write_bytes(path.read_bytes()[:-3000])
    return path


def _past_the_end(grey: np.ndarray, folder: Path) -> Path:
    """The pixel data element declares 16 MB; the file ends long before."""
    path = dicom_from(grey[:64, :64], folder / "hostile.dcm")
    data = path.read_bytes()
    at = data.rindex(b"\xe0\x7f\x10\x00")  # (7FE0,0010), explicit VR: tag, 'OW', 2 reserved, 4-byte length
    path.write_bytes(data[: at + 8] + (16 * 2**20).to_bytes(4, "little") + data[at + 12 :])
    return path


def _as_htj2k(dataset: pydicom.Dataset) -> None:
    """High-Throughput JPEG 2000, which none of the installed decoders reads."""
    dataset.file_meta.TransferSyntaxUID = HTJ2KLossless
    dataset.PixelData = encapsulate([bytes(64)])
    dataset["PixelData"].VR = "OB"


def _garbled_jpeg2000(dataset: pydicom.Dataset) -> None:
    """JPEG 2000 Lossless by its transfer syntax, but its one fragment is no codestream."""
    dataset.file_meta.TransferSyntaxUID = JPEG2000Lossless
    dataset.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(60)])
    dataset["PixelData"].VR = "OB"


def _frames_no_number(grey: np.ndarray, folder: Path) -> Path:
    """Number of Frames (an IS) written as 'x': pydicom writes no such value, so the bytes are edited."""
    path = _edited(grey, folder, lambda d: setattr(d, "NumberOfFrames", 9))
    element = b"\x28\x00\x08\x00IS\x02\x00"  # (0028,0008), explicit VR, 2 bytes
    path.write_bytes(path.read_bytes().replace(element + b"9 ", element + b"x "))
    return path


def _cut(path: Path, keep: int) -> Path:
    path.write_bytes(path.read_bytes()[:keep])
    return path


HOSTILE = {
    "truncated": (_truncated, "is a damaged DICOM file"),
    "an element longer than the file": (_past_the_end, "is a damaged DICOM file"),
    "65,535 x 65,535 (the most Rows and Columns can say)": (
        lambda g, f: _edited(g, f, lambda d: setattr(d, "Rows", 65_535) or setattr(d, "Columns", 65_535)),
        "is 65535x65535 pixels, over the cap of 64 million",
    ),
    "BitsAllocated 32": (
        lambda g, f: _edited(g, f, lambda d: setattr(d, "BitsAllocated", 32)),
        "stores 12 bits in 32",
    ),
    "no PixelData": (lambda g, f: _edited(g, f, lambda d: delattr(d, "PixelData")), "without pixel data"),
    "two frames": (lambda g, f: _edited(g, f, lambda d: setattr(d, "NumberOfFrames", 2)), "holds 2 frames"),
    "colour": (
        lambda g, f: _edited(g, f, lambda d: setattr(d, "PhotometricInterpretation", "RGB")),
        "is a RGB picture; a radiograph is grey",
    ),
    "no decoder": (
        lambda g, f: _edited(g, f, _as_htj2k),
        r"which no installed decoder reads; install one \(pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-openjpeg",
    ),
    "a JPEG 2000 codestream that is not one": (
        lambda g, f: _edited(g, f, _garbled_jpeg2000),
        ": its pixel data cannot be decoded",
    ),
    "a frame count that is no number": (_frames_no_number, "is a damaged DICOM file: its header cannot be parsed"),
    "a header cut short inside its file meta": (
        lambda g, f: _cut(dicom_from(g[:64, :64], f / "hostile.dcm"), 150),
        "is a damaged DICOM file",
    ),
    **{
        name: (lambda g, f, make=make: make(g[:64, :64], f / "hostile"), said)
        for name, (make, said) in ARCHIVE_HOSTILE.items()
    },
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_dicom_is_refused_by_name_in_seconds(case: str, grey: np.ndarray, tmp_path: Path) -> None:
    make, message = HOSTILE[case]
    path = make(grey, tmp_path)
    started = time.perf_counter()
    with pytest.raises(InputError, match=message) as refused:
        load_picture(path, 256)
    assert time.perf_counter() - started < 5 and str(path) in str(refused.value)
    assert not any(value in str(refused.value) for value in PATIENT.values()), "no patient data in the message"
