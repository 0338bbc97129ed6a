"""Container health checks that need more than one command: `python -m services.docker.health ROLE`."""

from __future__ import annotations

import sys
import time
import urllib.request

from services.viewer.site import pacs_login
from shared.basic_auth import basic_auth_header
from shared.settings import get_settings

BEAT_SCHEDULE = "celerybeat-schedule"  # beat.sh's -s; the dbm module adds a suffix (.db) or not (gdbm)


def beat_alive() -> bool:
    """beat saves its schedule after every task it sends (beat_sync_every), the reaper every
    REAP_INTERVAL_SECONDS: a file older than a few intervals means beat is stuck."""
    settings = get_settings()
    stale_after = max(120.0, 4 * settings.reap_interval_seconds)
    files = list(settings.layout.stack_dir.glob(f"{BEAT_SCHEDULE}*"))
    return bool(files) and time.time() - max(path.stat().st_mtime for path in files) < stale_after


def flower_alive() -> bool:
    settings = get_settings()
    request = urllib.request.Request(
        f"http://127.0.0.1:{settings.flower_port}/healthcheck",
        headers=basic_auth_header(settings.flower_basic_auth or ""),
    )
    try:
        return urllib.request.urlopen(request, timeout=5).status == 200
    except OSError:
        return False


def answers_with_login(url: str) -> bool:
    """The stack's own PACS or viewer answers `url` with the login it asks for."""
    user, password = pacs_login(get_settings())
    request = urllib.request.Request(url, headers=basic_auth_header(f"{user}:{password}"))
    try:
        return urllib.request.urlopen(request, timeout=5).status == 200
    except OSError:
        return False


def pacs_alive() -> bool:
    return answers_with_login(f"http://127.0.0.1:{get_settings().pacs_port}/system")


def viewer_alive() -> bool:  # through nginx to Orthanc: both answer, and the login is the PACS's
    settings = get_settings()
    address = "127.0.0.1" if settings.pacs_listen == "0.0.0.0" else settings.pacs_listen
    return answers_with_login(f"http://{address}:{settings.viewer_port}/dicom-web/studies?limit=1")


def mlflow_alive() -> bool:
    try:
        return urllib.request.urlopen("http://127.0.0.1:5000/health", timeout=5).status == 200
    except OSError:
        return False


if __name__ == "__main__":
    check = {
        "beat": beat_alive,
        "flower": flower_alive,
        "mlflow": mlflow_alive,
        "pacs": pacs_alive,
        "viewer": viewer_alive,
    }[sys.argv[1]]
    raise SystemExit(0 if check() else 1)
