"""The PACS round trip of `dispatch predict --pacs`: the study's radiographs fetched (WADO-RS, in the transfer
syntax the PACS stores them in) into a private folder, each file named by its pseudonym, and with `--store` the
SEGs and reports sent back (STOW-RS), where they join the same study."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.dicomweb import AS_STORED, StudyRequest, answered, connect, radiograph_series, refused_as_stored
from shared.settings import Settings
from workers.imaging.pseudonyms import picture_pseudonym


def fetch_radiographs(settings: Settings, url: str, request: StudyRequest, key: bytes, folder: Path) -> list[Path]:
    """Every instance of the study's radiograph series, as `<pseudonym>.dcm` in `folder` (0700: they carry
    the patient's header)."""
    client = connect(url, settings)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    files = []
    for series in radiograph_series(client, url, request):
        for dataset in answered(url, lambda series=series: _retrieve(client, request.study, series)):
            path = folder / f"{picture_pseudonym(key, str(dataset.SOPInstanceUID))}.dcm"
            dataset.save_as(path, enforce_file_format=True)
            files.append(path)
    return files


def _retrieve(client: Any, study: str, series: str) -> list[Any]:
    """The series as the PACS stores it (any transfer syntax: the readers decode what their plugins can, and
    name the package for what they cannot); the PACS's default syntax only where it refuses that."""
    try:
        return client.retrieve_series(study, series, media_types=AS_STORED)
    except Exception as error:
        if not refused_as_stored(error):
            raise
        return client.retrieve_series(study, series)


def store(settings: Settings, url: str, files: list[Path]) -> int:
    """The files sent to the PACS in one STOW-RS request; returns how many it took."""
    import pydicom

    client = connect(url, settings)
    datasets: list[Any] = [pydicom.dcmread(path) for path in files]
    answered(url, lambda: client.store_instances(datasets))
    return len(datasets)
