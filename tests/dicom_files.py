"""DICOM radiographs written by the tests (pydicom) from a grey picture, as modalities store them: 12 bits in
16, MONOCHROME2 or MONOCHROME1 (inverted), a window or a VOI LUT, uncompressed, JPEG 2000 (Pillow's codestream,
encapsulated) or JPEG Lossless (transcoded by gdcm), with made-up patient data in every identifying attribute."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
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
    dataset.save_as(path, enforce_file_format=True)
    if codec == "jpeg-lossless":
        _transcode_to_jpeg_lossless(path)
    return path


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
