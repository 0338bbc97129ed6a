"""Orthanc as the stack's PACS: Debian's build with its DICOMweb plugin, storage in the data root's private
folder, HTTP behind one login (from this machine only, unless it runs in a container of its own)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

ORTHANC = "Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
DICOMWEB_ROOT = "/dicom-web/"


def orthanc_binary() -> str | None:
    found = shutil.which(ORTHANC) or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").is_file() else None)
    return found if found and DICOMWEB_PLUGIN.is_file() else None


def orthanc_config(storage: Path, port: int, user: str, password: str, remote_access: bool) -> dict[str, Any]:
    """Orthanc's configuration (written 0600: it holds the login). `remote_access`: answer other addresses than
    this machine's own (in compose, the viewer and the workers are other containers)."""
    return {
        "Name": "fracatlas",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": port,
        # Pictures come in over DICOMweb (STOW-RS) and `dispatch pacs upload`; no DICOM listener to guard.
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": remote_access,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {user: password},
        "Plugins": [str(DICOMWEB_PLUGIN)],
        # The viewer asks through nginx: the plugin names bulk data by the Host header nginx passes on.
        "DicomWeb": {"Enable": True, "Root": DICOMWEB_ROOT, "EnableWado": True},
    }
