"""The classifier's answer on a DICOM radiograph as a DICOM structured report (highdicom's TID 1500
measurement report): one image-level measurement group on its source instance, holding the probability of
a fracture and the finding at the chosen threshold (present or absent), the classifier as the algorithm."""

from __future__ import annotations

from pathlib import Path

from workers.predict.dicom_seg import Algorithm, new_instance, save, source_header

SERIES_NUMBER = 902  # the system's report series in a study (its SEGs are 901)
FRACTURE = ("125605004", "SCT", "Fracture of bone")


def write_report(source: Path, probability: float, threshold: float, algorithm: Algorithm, out: Path) -> Path:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    dataset = source_header(source)
    fracture = hd.sr.CodedConcept(*FRACTURE)
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name=algorithm.name, model_name=algorithm.version
        ),
    )
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="fracture classification"),
        finding_type=fracture,
        algorithm_id=hd.sr.AlgorithmIdentification(name=algorithm.name, version=algorithm.version),
        measurements=[hd.sr.Measurement(name=codes.DCM.Probability, value=probability, unit=codes.UCUM.NoUnits)],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(
                name=fracture, value=codes.SCT.Present if probability >= threshold else codes.SCT.Absent
            )
        ],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(dataset)],
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=codes.SCT.ImagingProcedure,
        imaging_measurements=[group],
    )
    document = hd.sr.Comprehensive3DSR(
        evidence=[dataset],
        content=report,
        **new_instance(SERIES_NUMBER),
        is_complete=True,
    )
    return save(document, out)
