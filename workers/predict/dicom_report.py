"""The classifier's answer on a DICOM radiograph as a DICOM structured report (highdicom's TID 1500
measurement report): one planar ROI measurement group (TID 1410) on its source instance, holding the
probability of a fracture and the finding at the chosen threshold (present or absent), the classifier as the
algorithm. Its region is the box around the predicted fracture (the whole picture where none is segmented):
OHIF draws a report only where a group has a region, with the probability written beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from workers.predict.dicom_seg import Algorithm, new_instance, save, source_header

SERIES_NUMBER = 902  # the system's report series in a study (its SEGs are 901)
FRACTURE = ("125605004", "SCT", "Fracture of bone")


def write_report(
    source: Path, probability: float, threshold: float, algorithm: Algorithm, out: Path, fracture: np.ndarray
) -> Path:
    """`fracture`: the predicted fracture pixels (any category) at the source's own Rows x Columns."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    dataset = source_header(source)
    finding = hd.sr.CodedConcept(*FRACTURE)
    present = probability >= threshold
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name=algorithm.name, model_name=algorithm.version
        ),
    )
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=region_outline(fracture),
        source_image=hd.sr.SourceImageForRegion.from_source_image(dataset),
    )
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="fracture classification"),
        referenced_region=region,
        finding_type=finding,
        algorithm_id=hd.sr.AlgorithmIdentification(name=algorithm.name, version=algorithm.version),
        # In percent: a viewer writes the value with its unit ("Probability: 83.00 %").
        measurements=[hd.sr.Measurement(name=codes.DCM.Probability, value=100 * probability, unit=codes.UCUM.Percent)],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(name=finding, value=codes.SCT.Present if present else codes.SCT.Absent)
        ],
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=codes.SCT.ImagingProcedure,
        imaging_measurements=[group],
    )
    document = hd.sr.Comprehensive3DSR(
        evidence=[dataset], content=report, **new_instance(SERIES_NUMBER), is_complete=True
    )
    # The series' name in a viewer's study list: the finding readable without opening the report.
    document.SeriesDescription = f"fracture {'present' if present else 'absent'}, probability {probability:.0%}"
    return save(document, out)


def region_outline(fracture: np.ndarray) -> np.ndarray:
    """The closed box around the fracture's pixels, or around the picture where there are none, in DICOM's
    image coordinates (column, row; 0.0 the top left corner of the top left pixel)."""
    rows, columns = np.nonzero(fracture)
    if rows.size:
        left, top, right, bottom = columns.min(), rows.min(), columns.max() + 1, rows.max() + 1
    else:
        (bottom, right), left, top = fracture.shape, 0, 0
    corners = [(left, top), (right, top), (right, bottom), (left, bottom), (left, top)]
    return np.array(corners, dtype=np.float32)
