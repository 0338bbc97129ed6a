"""The PACS or the viewer in a compose container: its files written from the settings (services/viewer/site.py),
then Orthanc or nginx in this process's place, so that the container's init signals it directly.

    python -m services.viewer.serve pacs|viewer
"""

from __future__ import annotations

import os
import sys

from services.viewer.nginx import nginx_binary
from services.viewer.ohif import is_built
from services.viewer.orthanc import orthanc_binary
from services.viewer.site import write_pacs, write_viewer
from shared.settings import get_settings

IMAGES = "services/docker/Dockerfile's targets `pacs` and `viewer`"


def command_line(role: str) -> list[str]:
    settings = get_settings()
    if role == "pacs":
        orthanc = orthanc_binary()
        if not orthanc:
            raise SystemExit(f"no Orthanc with its DICOMweb plugin in this image (see {IMAGES})")
        return write_pacs(settings, orthanc)
    nginx, dist = nginx_binary(), settings.ohif_dist.resolve()
    if not (nginx and is_built(dist)):
        raise SystemExit(f"no nginx, or no OHIF in {dist} (OHIF_DIST), in this image (see {IMAGES})")
    return write_viewer(settings, nginx, dist)


if __name__ == "__main__":
    if sys.argv[1:] not in (["pacs"], ["viewer"]):
        raise SystemExit("usage: python -m services.viewer.serve pacs|viewer")
    line = command_line(sys.argv[1])
    os.execv(line[0], line)
