"""A real PACS for the tests: Debian's Orthanc with its DICOMweb plugin (`make pacs-tools`), started on free
ports with a login, its storage in the test's folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from conftest import PACS_PASSWORD, PACS_USERNAME, free_port, require

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


@dataclass(frozen=True)
class Orthanc:
    rest: str  # Orthanc's own REST API
    dicomweb: str  # what `dispatch predict --pacs` takes

    def upload(self, path: Path) -> None:
        answer = requests.post(f"{self.rest}/instances", data=path.read_bytes(), auth=LOGIN, timeout=30)
        answer.raise_for_status()

    def instances(self) -> list[dict]:
        """Every instance held, with its main DICOM tags."""
        answer = requests.get(f"{self.rest}/instances", params={"expand": ""}, auth=LOGIN, timeout=30)
        answer.raise_for_status()
        return answer.json()

    def file(self, orthanc_id: str) -> bytes:
        answer = requests.get(f"{self.rest}/instances/{orthanc_id}/file", auth=LOGIN, timeout=30)
        answer.raise_for_status()
        return answer.content


LOGIN = (PACS_USERNAME, PACS_PASSWORD)


@contextmanager
def running_orthanc(folder: Path) -> Iterator[Orthanc]:
    orthanc = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    require(Path(orthanc).is_file() and DICOMWEB_PLUGIN.is_file(), "Orthanc is not installed (make pacs-tools)")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "Name": "fracatlas-tests",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "storage"),
        "HttpPort": port,
        "DicomPort": free_port(),
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {PACS_USERNAME: PACS_PASSWORD},
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = (folder / "orthanc.log").open("w")
    process = subprocess.Popen([orthanc, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    rest = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{rest}/system", auth=LOGIN, timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, (folder / "orthanc.log").read_text()
            time.sleep(0.2)
        yield Orthanc(rest, f"{rest}/dicom-web")
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
