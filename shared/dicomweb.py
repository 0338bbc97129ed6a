"""A PACS over DICOMweb, as `dispatch predict --pacs URL --study UID` uses it: the login from the settings,
a search for the study's radiograph series (QIDO-RS), and the PACS's failures as one line that names it.

The dispatcher asks first, so that a PACS that is down, a login it refuses or a study without a radiograph
is answered before a run exists; the worker asks again when it retrieves. The study's and series' UIDs are
patient data (PS3.15 Annex E): they never enter the job table, a log or a message. The dispatcher hands them
to the worker in a request file under the data root's private folder, and the run names only that file.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from shared.errors import InputError
from shared.private_files import write_new_private
from shared.redact import silence_dicom_libraries
from shared.settings import Settings

RADIOGRAPH_MODALITIES = ("DX", "CR", "MG")
MODALITY, SERIES_UID = "00080060", "0020000E"  # the DICOM JSON model's keys
REQUESTS = "pacs-requests"  # under the private folder
# WADO-RS's Accept for a series as the PACS stores it, whatever its transfer syntax (PS3.18 8.7.3.5.2): no
# transcoding, which a PACS without the codec cannot do.
AS_STORED = (("application/dicom", "*"),)
UID = re.compile(r"\b\d+(?:\.\d+){3,}\b")  # a DICOM UID, which a PACS's message may quote
T = TypeVar("T")


class PacsError(InputError):
    """The PACS did not answer, refused the login, or holds nothing to predict; the message names its URL."""


@dataclass(frozen=True)
class StudyRequest:
    """What the worker fetches: a study, or one series of it."""

    study: str
    series: str | None = None


def checked_url(url: str) -> str:
    """--pacs as it may be stored and shown: an http(s) URL without a login in it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PacsError(f"--pacs {url!r} is not an http(s) URL of a DICOMweb service (http://pacs:8042/dicom-web)")
    if parts.username or parts.password:
        raise PacsError(
            "--pacs holds a login; give the URL without it and the login in PACS_USERNAME and PACS_PASSWORD"
        )
    return url.rstrip("/")


def connect(url: str, settings: Settings) -> Any:
    """A DICOMweb client of the PACS at `url`, with the settings' login where one is set."""
    import requests
    from dicomweb_client import DICOMwebClient

    silence_dicom_libraries()
    session = requests.Session()
    session.auth = settings.pacs_login(url)
    client = DICOMwebClient(url, session=session, timeout=settings.pacs_timeout_seconds)
    # Its default retries any failure 5 times over 30 s: a PACS that is down is then answered in 3 s.
    client.set_http_retry_params(max_attempts=3, wait_exponential_multiplier=500)
    return client


def answered(url: str, asking: Callable[[], T]) -> T:
    """`asking()`, with the PACS's failures as a PacsError naming it (and never the request, which holds UIDs)."""
    import requests

    try:
        return asking()
    except requests.exceptions.HTTPError as error:
        status = error.response.status_code if error.response is not None else 0
        if status in (401, 403):
            raise PacsError(
                f"the PACS at {url} refused the login (HTTP {status}); set PACS_USERNAME and PACS_PASSWORD "
                "to a login it accepts"
            ) from None
        if status >= 500:
            said = _message_of(error.response)
            raise PacsError(
                f"the PACS at {url} failed (HTTP {status}{': ' + said if said else ''}); its own log says more"
            ) from None
        raise PacsError(f"the PACS at {url} answered HTTP {status}; check --pacs (its DICOMweb root)") from None
    except requests.exceptions.Timeout:
        raise PacsError(f"the PACS at {url} did not answer in time (PACS_TIMEOUT_SECONDS); is it up?") from None
    except requests.exceptions.RequestException as error:
        reason = type(error).__name__
        raise PacsError(f"cannot reach the PACS at {url} ({reason}); check --pacs and that the PACS is up") from None


def refused_as_stored(error: BaseException) -> bool:
    """The PACS answered that it cannot send a series as stored (`transfer-syntax=*`): 406 Not Acceptable, or
    400 from one that does not know the parameter."""
    import requests

    response = getattr(error, "response", None)
    return isinstance(error, requests.exceptions.HTTPError) and getattr(response, "status_code", 0) in (400, 406)


def _message_of(response: Any) -> str:
    """A failing PACS's own words, short and with any UID taken out (it may quote the study's)."""
    if response is None:
        return ""
    try:
        content = response.json()
        text = next((str(content[key]) for key in ("Details", "Message", "message", "error") if key in content), "")
    except (ValueError, TypeError):
        text = response.text or ""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return UID.sub("<UID>", line)[:200]


def radiograph_series(client: Any, url: str, request: StudyRequest) -> list[str]:
    """The UIDs of the study's DX, CR and MG series (only the requested one, where one is)."""
    found = answered(url, lambda: client.search_for_series(request.study, fields=["Modality"]))
    if not found:
        raise PacsError(f"the PACS at {url} holds no study with the UID given to --study")
    modalities = {item[SERIES_UID]["Value"][0]: item.get(MODALITY, {}).get("Value", ["?"])[0] for item in found}
    if request.series is not None:
        if request.series not in modalities:
            raise PacsError(f"the study at {url} holds no series with the UID given to --series")
        modalities = {request.series: modalities[request.series]}
    chosen = [uid for uid, modality in modalities.items() if modality in RADIOGRAPH_MODALITIES]
    if not chosen:
        held = ", ".join(sorted(set(modalities.values())))
        where = "series" if request.series else "study"
        raise PacsError(f"the {where} at {url} holds no radiograph (DX, CR or MG); its series are {held}")
    return chosen


def write_request(private_dir: Path, request: StudyRequest) -> str:
    """The request file the worker reads (0600, in the 0700 private folder); returns its name for the run."""
    name = secrets.token_hex(8)
    content = json.dumps({"study": request.study, "series": request.series})
    write_new_private(private_dir, request_path(private_dir, name), content)
    return name


def request_path(private_dir: Path, name: str) -> Path:
    return private_dir / REQUESTS / f"{name}.json"


def read_request(private_dir: Path, name: str) -> StudyRequest:
    path = request_path(private_dir, name)
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        raise InputError(f"the PACS request {path} is gone or damaged; run `dispatch predict --pacs` again") from None
    return StudyRequest(content["study"], content.get("series"))


STOW_BATCH = 16  # instances per STOW-RS request: a folder of full-size radiographs goes in bounded requests


def upload(settings: Settings, url: str, paths: list[Path]) -> dict[str, list[str]]:
    """`dispatch pacs upload`: every file read first (one that is not DICOM refused by name, before anything is
    sent), then stored with STOW-RS; returns each study's UID with its SEG series' UIDs."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    datasets = []
    for path in paths:
        try:
            datasets.append(pydicom.dcmread(path))
        except (InvalidDicomError, OSError) as error:
            raise InputError(f"{path} is not a DICOM file ({error}); upload a folder of DICOM files only") from None
        if "StudyInstanceUID" not in datasets[-1]:
            raise InputError(f"{path} has no Study Instance UID; a PACS files every picture under its study")
    client = connect(url, settings)
    studies: dict[str, list[str]] = {}
    for start in range(0, len(datasets), STOW_BATCH):
        batch = datasets[start : start + STOW_BATCH]
        answered(url, lambda batch=batch: client.store_instances(batch))
    for dataset in datasets:
        segs = studies.setdefault(dataset.StudyInstanceUID, [])
        if dataset.get("Modality") == "SEG" and dataset.SeriesInstanceUID not in segs:
            segs.append(dataset.SeriesInstanceUID)
    return studies
