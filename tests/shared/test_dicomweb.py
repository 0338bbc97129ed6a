"""The PACS as the dispatcher and the worker ask it (shared/dicomweb.py), against a real Orthanc: the study's
radiograph series found, and each failure a user meets (a PACS that is down, a login refused, no such study,
a study without a radiograph) one line that names the PACS and never the study's UID."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import PACS_PASSWORD, PACS_USERNAME, free_port
from dicom_files import dicom_from
from orthanc import Orthanc, running_orthanc

from shared.dicomweb import (
    PacsError,
    StudyRequest,
    checked_url,
    connect,
    radiograph_series,
    read_request,
    request_path,
    write_request,
)
from shared.errors import InputError
from shared.settings import Settings

LOGIN = Settings(pacs_username=PACS_USERNAME, pacs_password=PACS_PASSWORD, pacs_timeout_seconds=10)


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Orthanc, pydicom.Dataset, pydicom.Dataset]]:
    """Orthanc holding a study with a DX series, and a second study with a CT series only."""
    folder = tmp_path_factory.mktemp("orthanc")
    grey = np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))
    radiograph = dicom_from(grey, folder / "dx.dcm")
    ct = pydicom.dcmread(dicom_from(grey, folder / "ct.dcm"))
    ct.Modality = "CT"
    ct.save_as(folder / "ct.dcm")
    with running_orthanc(folder / "pacs") as orthanc:
        for path in (radiograph, folder / "ct.dcm"):
            orthanc.upload(path)
        yield orthanc, pydicom.dcmread(radiograph, stop_before_pixels=True), ct


def test_the_radiograph_series_of_a_study(pacs: tuple[Orthanc, pydicom.Dataset, pydicom.Dataset]) -> None:
    orthanc, radiograph, _ct = pacs
    client = connect(orthanc.dicomweb, LOGIN)
    study, series = radiograph.StudyInstanceUID, radiograph.SeriesInstanceUID
    assert radiograph_series(client, orthanc.dicomweb, StudyRequest(study)) == [series]
    assert radiograph_series(client, orthanc.dicomweb, StudyRequest(study, series)) == [series]
    with pytest.raises(PacsError, match="holds no series with the UID given to --series"):
        radiograph_series(client, orthanc.dicomweb, StudyRequest(study, "1.2.3.4"))


def test_a_study_without_a_radiograph_or_unknown(pacs: tuple[Orthanc, pydicom.Dataset, pydicom.Dataset]) -> None:
    orthanc, _radiograph, ct = pacs
    client = connect(orthanc.dicomweb, LOGIN)
    with pytest.raises(PacsError) as refused:
        radiograph_series(client, orthanc.dicomweb, StudyRequest(ct.StudyInstanceUID))
    assert str(refused.value) == (
        f"the study at {orthanc.dicomweb} holds no radiograph (DX, CR or MG); its series are CT"
    )
    assert ct.StudyInstanceUID not in str(refused.value)
    with pytest.raises(PacsError, match="holds no study with the UID given to --study"):
        radiograph_series(client, orthanc.dicomweb, StudyRequest("1.2.826.0.1.99"))


def test_a_refused_login_and_a_pacs_that_is_down(pacs: tuple[Orthanc, pydicom.Dataset, pydicom.Dataset]) -> None:
    orthanc, radiograph, _ct = pacs
    wrong = Settings(pacs_username=PACS_USERNAME, pacs_password="not-the-password")
    with pytest.raises(PacsError) as refused:
        radiograph_series(connect(orthanc.dicomweb, wrong), orthanc.dicomweb, StudyRequest(radiograph.StudyInstanceUID))
    assert str(refused.value).startswith(f"the PACS at {orthanc.dicomweb} refused the login (HTTP 401)")
    assert "not-the-password" not in str(refused.value)
    down = f"http://127.0.0.1:{free_port()}/dicom-web"
    with pytest.raises(PacsError) as unreachable:
        radiograph_series(connect(down, LOGIN), down, StudyRequest(radiograph.StudyInstanceUID))
    assert str(unreachable.value) == (
        f"cannot reach the PACS at {down} (ConnectionError); check --pacs and that the PACS is up"
    )


def test_the_url_carries_no_login() -> None:
    assert checked_url("http://pacs:8042/dicom-web/") == "http://pacs:8042/dicom-web"
    with pytest.raises(PacsError, match="holds a login"):
        checked_url("http://radiology:secret@pacs:8042/dicom-web")
    with pytest.raises(PacsError, match="is not an http"):
        checked_url("dicom://pacs:104")


def test_the_request_file_is_its_owners_alone(tmp_path: Path) -> None:
    private = tmp_path / "private"
    name = write_request(private, StudyRequest("1.2.3", "1.2.3.4"))
    assert read_request(private, name) == StudyRequest("1.2.3", "1.2.3.4")
    assert stat.S_IMODE(request_path(private, name).stat().st_mode) == 0o600
    assert stat.S_IMODE(private.stat().st_mode) == 0o700 and "1.2.3" not in name
    request_path(private, name).unlink()
    with pytest.raises(InputError, match="is gone or damaged; run `dispatch predict --pacs` again"):
        read_request(private, name)
