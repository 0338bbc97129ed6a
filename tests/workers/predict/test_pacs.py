"""The worker's side of the PACS round trip (workers/predict/pacs.py) and the classifier's DICOM report
(workers/predict/dicom_report.py), against a real Orthanc: the study's radiographs fetched under their
pseudonyms into a folder of the owner's alone, a JPEG 2000 study as stored (Orthanc as Debian ships it cannot
transcode it, and says so with an HTTP 500 that reaches the user in the PACS's own words), and a report
stored back into the same study."""

from __future__ import annotations

import stat
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from conftest import PACS_PASSWORD, PACS_USERNAME
from dicom_files import PATIENT, dicom_from
from orthanc import running_orthanc
from pydicom.uid import JPEG2000Lossless

from shared.dicomweb import PacsError, StudyRequest, answered, connect
from shared.settings import Settings
from workers.imaging.pseudonyms import picture_pseudonym
from workers.predict.dicom_report import FRACTURE, write_report
from workers.predict.dicom_seg import Algorithm
from workers.predict.pacs import fetch_radiographs, store

LOGIN = Settings(pacs_username=PACS_USERNAME, pacs_password=PACS_PASSWORD, pacs_timeout_seconds=10)
KEY = b"k" * 32
CLASSIFIER = Algorithm("Dataset430_FracAtlas-classifier", "r7")


def test_fetch_report_and_store_back(tmp_path: Path) -> None:
    grey = np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))
    source = pydicom.dcmread(dicom_from(grey, tmp_path / "dx.dcm"), stop_before_pixels=True)
    with running_orthanc(tmp_path / "pacs") as orthanc:
        orthanc.upload(tmp_path / "dx.dcm")
        fetched = tmp_path / "private" / "fetched"
        files = fetch_radiographs(LOGIN, orthanc.dicomweb, StudyRequest(source.StudyInstanceUID), KEY, fetched)
        assert [path.name for path in files] == [f"{picture_pseudonym(KEY, source.SOPInstanceUID)}.dcm"]
        assert stat.S_IMODE(fetched.stat().st_mode) == 0o700
        assert np.array_equal(pydicom.dcmread(files[0]).pixel_array, pydicom.dcmread(tmp_path / "dx.dcm").pixel_array)

        fracture = np.zeros(grey.shape, bool)
        fracture[10:20, 30:45] = fracture[25, 12] = True
        report = write_report(files[0], 0.83, 0.5, CLASSIFIER, tmp_path / "report.dcm", fracture)
        assert store(LOGIN, orthanc.dicomweb, [report]) == 1
        held = {item["MainDicomTags"]["SOPInstanceUID"]: item for item in orthanc.instances()}
        assert len(held) == 2
        stored = pydicom.dcmread(tmp_path / "report.dcm")
        assert stored.SOPInstanceUID in held and stored.StudyInstanceUID == source.StudyInstanceUID

    assert_report(stored, source, probability=0.83, present=True, box=(12, 10, 45, 26))
    assert stored.SeriesDescription == "fracture present, probability 83%"
    nothing = np.zeros(grey.shape, bool)
    absent = pydicom.dcmread(write_report(files[0], 0.2, 0.5, CLASSIFIER, tmp_path / "absent.dcm", nothing))
    assert_report(absent, source, probability=0.2, present=False, box=(0, 0, 64, 48))
    assert absent.SeriesDescription == "fracture absent, probability 20%"
    assert absent.PatientName == PATIENT["PatientName"], "the report is the study's: its patient is the source's"


def test_a_jpeg_2000_study_comes_as_stored_and_a_failing_pacs_speaks_for_itself(tmp_path: Path) -> None:
    grey = np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))
    path = dicom_from(grey, tmp_path / "j2k.dcm", codec="jpeg2000")
    source = pydicom.dcmread(path, stop_before_pixels=True)
    study, series = source.StudyInstanceUID, source.SeriesInstanceUID
    with running_orthanc(tmp_path / "pacs") as orthanc:
        orthanc.upload(path)
        client = connect(orthanc.dicomweb, LOGIN)
        with pytest.raises(PacsError) as failed:  # the default syntax: Orthanc would have to decode JPEG 2000
            answered(orthanc.dicomweb, lambda: client.retrieve_series(study, series))
        said = str(failed.value)
        assert said.startswith(f"the PACS at {orthanc.dicomweb} failed (HTTP 500: ") and "its own log" in said
        assert len(said) > len(f"the PACS at {orthanc.dicomweb} failed (HTTP 500: ); its own log says more")
        assert study not in said and series not in said and source.SOPInstanceUID not in said
        files = fetch_radiographs(LOGIN, orthanc.dicomweb, StudyRequest(study), KEY, tmp_path / "fetched")
    fetched = pydicom.dcmread(files[0])
    assert fetched.file_meta.TransferSyntaxUID == JPEG2000Lossless, "as the PACS stores it"
    assert np.array_equal(fetched.pixel_array, pydicom.dcmread(path).pixel_array)


def assert_report(
    dataset: pydicom.Dataset, source: pydicom.Dataset, probability: float, present: bool, box: tuple[int, ...]
) -> None:
    """The report's one planar ROI group: the probability, the finding, the classifier, and its region on the
    source: the closed box (left, top, right, bottom) around the fracture."""
    report = hd.sr.Comprehensive3DSR.from_dataset(dataset)
    groups = report.content.get_planar_roi_measurement_groups()
    assert len(groups) == 1
    group = groups[0]
    measurement = group.get_measurements()[0]
    assert measurement.value == pytest.approx(100 * probability) and measurement.unit.value == "%"
    region = group.roi
    assert region.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
    left, top, right, bottom = box
    corners = [[left, top], [right, top], [right, bottom], [left, bottom], [left, top]]
    assert region.value.tolist() == corners
    evaluation = group.get_qualitative_evaluations()[0]
    assert evaluation.name == hd.sr.CodedConcept(*FRACTURE)
    assert evaluation.value.meaning == ("Present" if present else "Absent")
    texts = {item.ConceptNameCodeSequence[0].CodeMeaning: item.get("TextValue") for item in _items(group[0])}
    assert texts["Algorithm Name"] == CLASSIFIER.name and texts["Algorithm Version"] == CLASSIFIER.version
    assert region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID


def _items(item: pydicom.Dataset) -> list[pydicom.Dataset]:
    """Every content item under `item`, depth first."""
    found = []
    for child in item.get("ContentSequence", []):
        found += [child, *_items(child)]
    return found
