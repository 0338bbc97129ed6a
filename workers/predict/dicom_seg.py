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

SERIES_NUMBER = 901  # the system's SEG series in a study
SOFTWARE = "fracatlas-jobs"
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
        **new_instance(SERIES_NUMBER),
        manufacturer_model_name=algorithm.name,
        software_versions=SOFTWARE,
        device_serial_number="0",
        omit_empty_frames=False,
    )
    return save(segmentation, out)
