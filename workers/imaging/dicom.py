"""DICOM radiographs (DX, CR, MG: single-frame grey pictures) read as a viewer shows them.

pydicom's `pixel_array` applies no LUT, so this module does what a viewer does (PS3.3 C.11): the modality
LUT (Rescale Slope and Intercept, or a Modality LUT Sequence), then the VOI LUT (a VOI LUT Sequence, preferred
over the window; a window if there is one; else the picture's own range), then MONOCHROME1 inverted (bone
dark is stored inverted) and a Presentation LUT Shape INVERSE flipping it again. The result is a float
picture in [0, 1], so that 10 to 16 bits of depth are kept until the working picture is made.

Read as untrusted: the header is checked (size, frames, colour, bit depth, pixel data present) before any
pixel is decoded, and nothing read from it that identifies a person is ever put in a message: only the
attributes below, which describe the pixels.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.errors import InputError

PREAMBLE, MAGIC = 128, b"DICM"
GREY = ("MONOCHROME1", "MONOCHROME2")
BITS_ALLOCATED = (8, 16)
# What pydicom's header read can raise on a damaged file, a deflated data set's corrupt stream included.
HEADER_ERRORS = (EOFError, OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, zlib.error)


@dataclass(frozen=True)
class DicomPicture:
    pixels: np.ndarray  # (rows, columns) float32 in [0, 1], as a viewer shows it (bone bright)
    spacing_mm: tuple[float, float] | None  # (row, column) spacing: PixelSpacing, else ImagerPixelSpacing
    bits_stored: int


@dataclass(frozen=True)
class Identity:
    """What ties a DICOM picture to its patient and study: kept in the data root's private map only."""

    sop_instance_uid: str
    study_uid: str
    series_uid: str
    patient_id: str


def read_identity(path: Path) -> Identity | None:
    """The UIDs and PatientID of a DICOM file, from its header alone; None where `path` is not DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    with path.open("rb") as handle:
        if not is_dicom(handle.read(PREAMBLE + len(MAGIC))):
            return None
    keywords = ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "PatientID")
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(keywords))
    except (InvalidDicomError, *HEADER_ERRORS) as error:
        raise InputError(f"{path} is a damaged DICOM file: {_header_fault(error)}; it is not read") from None
    return Identity(*(str(header.get(keyword, "") or "") for keyword in keywords))


def is_dicom(data: bytes) -> bool:
    """A DICOM file (PS3.10): 'DICM' after the 128-byte preamble, whatever its name."""
    return data[PREAMBLE : PREAMBLE + len(MAGIC)] == MAGIC


class _CountedReads(io.BytesIO):
    """The file as pydicom reads it, noting a read that came back short: pydicom takes an element that claims
    more bytes than the file holds as whatever is left, and a file cut short as a shorter one."""

    short: tuple[int, int] | None = None  # (bytes asked, bytes there) of the first short read

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        if self.short is None and size is not None and size > 0 and 0 < len(chunk) < size:
            self.short = (size, len(chunk))
        return chunk


def read_dicom(data: bytes, path: Path, max_pixels: int) -> DicomPicture:
    import pydicom
    from pydicom.errors import InvalidDicomError

    source = _CountedReads(data)
    try:
        dataset = pydicom.dcmread(source)
    except InvalidDicomError as error:
        raise InputError(f"{path} is not a DICOM file that can be read ({error})") from None
    except HEADER_ERRORS as error:
        raise InputError(f"{path} is a damaged DICOM file: {_header_fault(error)}; it is not read") from None
    if source.short is not None:
        asked, there = source.short
        raise InputError(
            f"{path} is a damaged DICOM file: an element claims {asked} bytes where the file holds {there} "
            "(cut short, or a wrong length); it is not read"
        )
    try:  # the header's values, parsed as they are read: a malformed one (Rows 'abc') fails here
        _check_header(dataset, path, max_pixels)
        spacing = _spacing(dataset)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError) as error:
        raise InputError(f"{path} is a damaged DICOM file: {_header_fault(error)}; it is not read") from None
    _check_decoder(dataset, path)
    try:
        stored = dataset.pixel_array
    except (NotImplementedError, RuntimeError) as error:
        raise InputError(f"{path}: its pixel data cannot be decoded ({error})") from None
    except (EOFError, OSError, ValueError, KeyError, TypeError, IndexError, zlib.error) as error:
        raise InputError(f"{path}: its pixel data is damaged ({type(error).__name__}: {error})") from None
    _check_luts(dataset, path)
    try:
        pixels = _displayed(stored, dataset)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
        raise InputError(
            f"{path}: its LUTs cannot be applied to its pixels ({type(error).__name__}: {error}); export the "
            "radiograph again"
        ) from None
    if float(pixels.max()) == float(pixels.min()):
        raise InputError(f"{path} comes out blank: {_why_blank(dataset)}; no model learns from it, so it is not read")
    return DicomPicture(pixels, spacing, int(dataset.BitsStored))


def _header_fault(error: BaseException) -> str:
    """What went wrong in the header's read, in words."""
    if isinstance(error, zlib.error):
        return "its deflated data set cannot be inflated (the compressed stream is corrupt)"
    if isinstance(error, EOFError):
        return "it ends before its header does (cut short)"
    return f"its header cannot be parsed ({type(error).__name__}: {error})"


def _check_decoder(dataset: object, path: Path) -> None:
    """A compressed picture whose transfer syntax no installed decoder reads, refused by name with the package
    that would read it."""
    from pydicom.pixels import get_decoder

    syntax = dataset.file_meta.get("TransferSyntaxUID")  # type: ignore[attr-defined]
    if syntax is None:
        return  # pydicom guesses the syntax of a file without one; its read says what fails
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise InputError(f"{path} uses the transfer syntax {syntax}, which pydicom does not know") from None
    if not decoder.is_available:
        needed = "; ".join(decoder.missing_dependencies) or "a decoder plugin"
        raise InputError(
            f"{path} is compressed as {getattr(syntax, 'name', syntax)}, which no installed decoder reads; "
            f"install one ({needed})"
        )


def _check_luts(dataset: object, path: Path) -> None:
    """A Modality or VOI LUT whose data holds fewer entries than its descriptor says, refused in words."""
    for keyword, name in (("ModalityLUTSequence", "Modality LUT"), ("VOILUTSequence", "VOI LUT")):
        for item in dataset.get(keyword) or []:  # type: ignore[attr-defined]
            descriptor = item.get("LUTDescriptor")
            if descriptor is None or len(descriptor) != 3 or "LUTData" not in item:
                raise InputError(f"{path}: its {name} has no complete LUT Descriptor and LUT Data; it is not read")
            entries = int(descriptor[0]) or 65536  # PS3.3 C.11.1.1.1: 0 stands for 2^16
            data = item["LUTData"].value
            held = len(data) // 2 if isinstance(data, bytes) else len(data)
            if held < entries:
                raise InputError(
                    f"{path}: its {name}'s LUT Data holds {held} entries where its descriptor says {entries} (cut "
                    "short); it is not read"
                )


def _why_blank(dataset: object) -> str:
    get = dataset.get  # type: ignore[attr-defined]
    if get("RescaleSlope") is not None and float(get("RescaleSlope")) == 0:
        return "its Rescale Slope is 0, so every pixel has the same value"
    return "every pixel shows the same value after its LUTs (a constant picture, or a window outside its values)"


def _check_header(dataset: object, path: Path, max_pixels: int) -> None:
    """What a radiograph must be, from the header alone: refused by name before anything is decoded."""
    get = dataset.get  # type: ignore[attr-defined]
    if "PixelData" not in dataset:  # type: ignore[operator]
        raise InputError(
            f"{path} is a DICOM object without pixel data (a report, a presentation state, a segmentation or "
            "a DICOMDIR); only pictures are read"
        )
    rows, columns = int(get("Rows", 0) or 0), int(get("Columns", 0) or 0)
    if rows <= 0 or columns <= 0:
        raise InputError(f"{path} has no valid Rows and Columns; it is not read")
    if rows * columns > max_pixels:
        raise InputError(f"{path} is {columns}x{rows} pixels, over the cap of {max_pixels / 1e6:g} million")
    if int(get("NumberOfFrames", 1) or 1) > 1:
        raise InputError(f"{path} holds {get('NumberOfFrames')} frames; a radiograph is one frame (export one)")
    photometric = str(get("PhotometricInterpretation", ""))
    if int(get("SamplesPerPixel", 1) or 1) != 1 or photometric not in GREY:
        raise InputError(f"{path} is a {photometric or 'colour'} picture; a radiograph is grey (MONOCHROME1 or 2)")
    allocated, stored = int(get("BitsAllocated", 0) or 0), int(get("BitsStored", 0) or 0)
    if allocated not in BITS_ALLOCATED or not 1 <= stored <= allocated:
        raise InputError(
            f"{path} stores {stored} bits in {allocated}; a radiograph is read with 8 or 16 bits allocated"
        )


def _displayed(stored: np.ndarray, dataset: object) -> np.ndarray:
    """The modality LUT, the VOI LUT (or window), the photometric interpretation: [0, 1], bone bright."""
    from pydicom.pixels import apply_modality_lut, apply_voi

    get = dataset.get  # type: ignore[attr-defined]
    values = np.asarray(apply_modality_lut(stored, dataset), dtype=np.float64)
    if "VOILUTSequence" in dataset:  # type: ignore[operator]
        lut = dataset.VOILUTSequence[0]  # type: ignore[attr-defined]
        bits = int(lut.LUTDescriptor[2])
        # A LUT is indexed by the (integer) modality values.
        indexed = np.rint(values).astype(np.int64)
        shown = np.asarray(apply_voi(indexed, dataset, index=0), dtype=np.float64) / (2**bits - 1)
    elif get("WindowCenter") is not None and get("WindowWidth") is not None:
        shown = _window(values, _first(get("WindowCenter")), _first(get("WindowWidth")))
    else:
        low, high = float(values.min()), float(values.max())
        shown = (values - low) / (high - low) if high > low else np.zeros_like(values)
    shown = np.clip(shown, 0, 1)
    inverted = str(get("PhotometricInterpretation")) == "MONOCHROME1"
    if str(get("PresentationLUTShape", "")).upper() == "INVERSE":
        inverted = not inverted
    return (1 - shown if inverted else shown).astype(np.float32)


def _window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1's linear window, to [0, 1]."""
    width = max(width, 1.0)
    return (values - (center - 0.5)) / (width - 1 if width > 1 else 1) + 0.5


def _first(value: object) -> float:
    """A window value: one number, or the first of several (the default view)."""
    try:
        return float(value[0])  # type: ignore[index]
    except TypeError:
        return float(value)  # type: ignore[arg-type]


def _spacing(dataset: object) -> tuple[float, float] | None:
    get = dataset.get  # type: ignore[attr-defined]
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = get(keyword)
        if value is not None and len(value) == 2:
            return float(value[0]), float(value[1])
    return None
