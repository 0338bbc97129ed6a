"""A prediction as a DICOM Segmentation (highdicom) on top of the DICOM radiograph it was made from: one
segment per category, the nnU-Net model as the algorithm, BINARY (the predicted labels) or FRACTIONAL (each
category's probability). It references its source instance and joins its study, so a viewer or a PACS
places it over the radiograph."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workers.files import replacing
from workers.predict.overlays import OVERLAY_COLOURS

SERIES_NUMBER = 901  # the system's SEG series in a study
SOFTWARE = "fracatlas-jobs"
# The picture's rows and columns as a plane (DICOM's ImageOrientationPatient: row then column direction).
ROWS_AND_COLUMNS = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
# Type 2 attributes a SEG copies from its source: present (empty) where a source left them out.
COPIED_TYPE_2 = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber",
)  # fmt: skip


def new_instance(series_number: int) -> dict[str, Any]:
    """highdicom's arguments that make a written object a new instance in the system's own series."""
    import highdicom as hd

    return {
        "series_instance_uid": hd.UID(),
        "series_number": series_number,
        "sop_instance_uid": hd.UID(),
        "instance_number": 1,
        "manufacturer": SOFTWARE,
    }


def save(document: Any, out: Path) -> Path:
    with replacing(out) as handle:  # a link planted at `out` is replaced, never written through
        document.save_as(handle)
    return out


def source_header(source: Path) -> Any:
    """The source radiograph's header, with the Type 2 attributes a derived object copies present."""
    import pydicom

    dataset = pydicom.dcmread(source, stop_before_pixels=True)
    for keyword in COPIED_TYPE_2:
        if keyword not in dataset:
            setattr(dataset, keyword, "")
    return dataset


@dataclass(frozen=True)
class Algorithm:
    name: str  # the registered nnU-Net model's name (Dataset<ID>_FracAtlas-nnunet)
    version: str  # the training run that gave its folds (r12)


def write_segmentation(
    source: Path,
    categories: list[str],
    algorithm: Algorithm,
    out: Path,
    labels: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
) -> Path:
    """`labels`: (rows, columns) label map (BINARY); or `probabilities`: (categories, rows, columns) in [0, 1]
    (FRACTIONAL); both at the source's own Rows x Columns."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    dataset = source_header(source)
    identification = hd.AlgorithmIdentificationSequence(
        name=algorithm.name, family=codes.cid7162.ArtificialIntelligence, version=algorithm.version
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=name,
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=hd.sr.CodedConcept(f"C{number}", "99FRACATLAS", name),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=identification,
            display_color=hd.color.CIELabColor.from_rgb(
                *(int(v) for v in OVERLAY_COLOURS[(number - 1) % len(OVERLAY_COLOURS)])
            ),
        )
        for number, name in enumerate(categories, start=1)
    ]
    if probabilities is not None:  # as highdicom takes fractions: (frames, rows, columns, segments)
        pixels = np.moveaxis(probabilities.astype(np.float32), 0, -1)[None]
        kind = hd.seg.SegmentationTypeValues.FRACTIONAL
    else:  # a label map: each pixel's segment number
        pixels = np.asarray(labels, dtype=np.uint8)
        kind = hd.seg.SegmentationTypeValues.BINARY
    segmentation = hd.seg.Segmentation(
        source_images=[dataset],
        pixel_array=pixels,
        segmentation_type=kind,
        segment_descriptions=descriptions,
        pixel_measures=_pixel_measures(dataset),
        **new_instance(SERIES_NUMBER),
        manufacturer_model_name=algorithm.name,
        software_versions=SOFTWARE,
        device_serial_number="0",
        omit_empty_frames=False,
    )
    if "PlaneOrientationSequence" not in segmentation.SharedFunctionalGroupsSequence[0]:
        # A radiograph has no patient frame (highdicom then writes no plane): the SEG's plane is the picture's
        # own rows and columns, which is what OHIF's SEG loader reads to lay it over the radiograph.
        orientation = hd.PlaneOrientationSequence("PATIENT", ROWS_AND_COLUMNS)
        segmentation.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence = orientation
    segmentation.SeriesDescription = f"segmentation by {algorithm.name} {algorithm.version}"  # a viewer's series list
    return save(segmentation, out)


def _pixel_measures(source: Any) -> Any:
    """The source's pixel spacing (a projection radiograph's ImagerPixelSpacing where it has no PixelSpacing)
    as the SEG's pixel measures: highdicom leaves them out for a DX, and OHIF's SEG viewport reads them."""
    import highdicom as hd

    spacing = source.get("PixelSpacing") or source.get("ImagerPixelSpacing") or [1.0, 1.0]
    return hd.PixelMeasuresSequence(pixel_spacing=[float(v) for v in spacing], slice_thickness=1.0)
