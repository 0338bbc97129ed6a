"""DICOM radiographs written by the tests (pydicom) from a grey picture, as modalities store them: 12 bits in
16, MONOCHROME2 or MONOCHROME1 (inverted), a window or a VOI LUT, uncompressed, RLE Lossless, JPEG 2000
(Pillow's codestream, encapsulated) or JPEG Lossless (transcoded by gdcm), with made-up patient data in every
identifying attribute; and the hostile ones a hospital's archive does hold (HOSTILE)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    generate_uid,
)

DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
# Made up: a search for each of these must find nothing outside the data root's private map.
PATIENT = {
    "PatientName": "Doe^Jane^Quinn",
    "PatientID": "PID-7731-XQ",
    "PatientBirthDate": "19610412",
    "AccessionNumber": "ACC-55120-ZZ",
    "InstitutionName": "St Elsewhere General Hospital",
    "ReferringPhysicianName": "House^Gregory",
    "StudyDate": "20240229",
    "StudyID": "STUDY-99Q",
}
SCALE = 16  # 8-bit grey -> 12 bits stored: value * 16 (0..4080)


def dicom_from(
    grey: np.ndarray,
    path: Path,
    photometric: str = "MONOCHROME2",
    voi: str = "window",
    codec: str = "none",
    patient: dict[str, str] | None = None,
) -> Path:
    """`grey` (rows, columns) uint8 as a 12-bit DX picture that a viewer shows as `grey`: `voi` 'window' (a
    window covering 0..4080), 'lut' (a VOI LUT Sequence stretching 0..4080 to 12 bits) or 'none'; `codec` 'none',
    'jpeg2000' or 'jpeg-lossless' (Process 14, first-order prediction)."""
    stored = grey.astype(np.uint16) * SCALE
    if photometric == "MONOCHROME1":
        stored = (4095 - stored).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEG2000Lossless if codec == "jpeg2000" else ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = DX_STORAGE, meta.MediaStorageSOPInstanceUID
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = generate_uid(), generate_uid()
    dataset.Modality = "DX"
    for keyword, value in (patient or PATIENT).items():
        setattr(dataset, keyword, value)
    dataset.Rows, dataset.Columns = grey.shape
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, photometric
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 12, 11, 0
    dataset.ImagerPixelSpacing = [0.143, 0.143]
    if voi == "window":
        dataset.WindowCenter, dataset.WindowWidth = 2040.5, 4081
    elif voi == "lut":
        lut = Dataset()
        lut.LUTDescriptor = [4096, 0, 12]  # 4,096 entries from stored value 0, 12 bits out
        lut.LUTData = np.minimum(np.arange(4096) * 4095 // (255 * SCALE), 4095).astype(np.uint16).tobytes()
        dataset.VOILUTSequence = [lut]
    if codec == "jpeg2000":
        codestream = io.BytesIO()
        Image.fromarray(stored.astype(np.uint16)).save(codestream, format="JPEG2000", irreversible=False, no_jp2=True)
        dataset.PixelData = encapsulate([codestream.getvalue()])
        dataset["PixelData"].VR = "OB"
    else:
        dataset.PixelData = stored.tobytes()
    if codec == "rle":
        dataset.compress(RLELossless)  # pydicom's own encoder
    dataset.save_as(path, enforce_file_format=True)
    if codec == "jpeg-lossless":
        _transcode_to_jpeg_lossless(path)
    return path


def _edited(grey: np.ndarray, path: Path, change: object, **options: str) -> Path:
    dicom_from(grey, path, **options)
    dataset = pydicom.dcmread(path)
    change(dataset)  # type: ignore[operator]
    dataset.save_as(path)
    return path


def corrupt_deflated(grey: np.ndarray, path: Path) -> Path:
    """A deflated data set whose compressed stream is corrupt: its first block's type is the reserved one."""
    _edited(grey, path, lambda d: setattr(d.file_meta, "TransferSyntaxUID", DeflatedExplicitVRLittleEndian))
    data = bytearray(path.read_bytes())
    meta_end = 144 + int.from_bytes(data[140:144], "little")  # after (0002,0000), the meta group's length
    data[meta_end] = 0b111  # BFINAL 1, BTYPE 11: "invalid block type"
    path.write_bytes(bytes(data))
    return path


def short_voi_lut(grey: np.ndarray, path: Path) -> Path:
    """A VOI LUT Sequence whose LUT Data holds 2 entries where its descriptor says 4,096."""
    return _edited(grey, path, lambda d: setattr(d.VOILUTSequence[0], "LUTData", bytes(4)), voi="lut")


def rescale_slope_zero(grey: np.ndarray, path: Path) -> Path:
    """A Rescale Slope of 0: every pixel the same value."""
    return _edited(grey, path, lambda d: setattr(d, "RescaleSlope", 0) or setattr(d, "RescaleIntercept", 0))


# Hostile files a hospital's archive does hold: what writes each, and what its refusal says.
HOSTILE = {
    "a deflated data set whose stream is corrupt": (corrupt_deflated, "its deflated data set cannot be inflated"),
    "a VOI LUT shorter than its descriptor": (short_voi_lut, "LUT Data holds 2 entries where its descriptor says 4096"),
    "a Rescale Slope of 0": (rescale_slope_zero, "comes out blank: its Rescale Slope is 0"),
}


def _transcode_to_jpeg_lossless(path: Path) -> None:
    """The file rewritten in JPEG Lossless (1.2.840.10008.1.2.4.70) by gdcm, which pydicom cannot encode."""
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(path))
    assert reader.Read(), f"gdcm cannot read {path}"
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
    change.SetInput(reader.GetImage())
    assert change.Change(), f"gdcm cannot transcode {path}"
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(path))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write(), f"gdcm cannot write {path}"
