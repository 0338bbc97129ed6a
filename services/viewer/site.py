"""The stack's own PACS and viewer as files under DATA_ROOT/stack: Orthanc's configuration, nginx's and OHIF's,
the login both ask for, and `pacs_server`, where dispatch and the workers find the PACS, its viewer and the
login. The local stack writes them at `make up LOCAL=1 PACS=1` (services/local/plan.py); in compose each
container writes its own as it starts (services/viewer/serve.py)."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from services.viewer.nginx import htpasswd_line, nginx_config
from services.viewer.ohif import app_config
from services.viewer.orthanc import DICOMWEB_ROOT, orthanc_config
from shared.private_files import kept_secret, write_private
from shared.settings import PACS_SERVER_FILE, Settings

PACS_USER = "fracatlas"
LOCAL_ONLY = "127.0.0.1"
NGINX_TEMPORARY = ("client-body", "proxy", "fastcgi", "uwsgi", "scgi")


def pacs_login(settings: Settings) -> tuple[str, str]:
    """PACS_USERNAME and PACS_PASSWORD where set (the login the workers send to a PACS), else `fracatlas` and a
    password generated once, kept in DATA_ROOT/stack/pacs_password (0600)."""
    if settings.pacs_username:
        return settings.pacs_username, settings.pacs_password or ""
    return PACS_USER, kept_secret(settings.layout.stack_dir / "pacs_password", secrets.token_urlsafe(18))


def viewer_url(settings: Settings) -> str:
    return (settings.viewer_url or f"http://127.0.0.1:{settings.viewer_port}").rstrip("/")


def write_pacs(settings: Settings, orthanc: str) -> list[str]:
    """Orthanc's configuration and `pacs_server`; returns Orthanc's command line."""
    user, password = pacs_login(settings)
    layout = settings.layout
    layout.private_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(layout.private_dir, 0o700)
    layout.pacs_dir.mkdir(mode=0o700, exist_ok=True)
    remote = settings.pacs_listen != LOCAL_ONLY
    config = orthanc_config(layout.pacs_dir, settings.pacs_port, user, password, remote_access=remote)
    orthanc_file = write_private(layout.stack_dir / "orthanc.json", json.dumps(config, indent=1))
    dicomweb = f"http://{settings.pacs_host}:{settings.pacs_port}{DICOMWEB_ROOT.rstrip('/')}"
    server = {"dicomweb": dicomweb, "viewer": viewer_url(settings), "user": user, "password": password}
    write_private(layout.stack_dir / PACS_SERVER_FILE, json.dumps(server))
    return [orthanc, str(orthanc_file)]


def write_viewer(settings: Settings, nginx: str, dist: Path) -> list[str]:
    """nginx's configuration (its login file, OHIF's app-config.js); returns nginx's command line."""
    user, password = pacs_login(settings)
    folder = settings.layout.stack_dir / "viewer"
    for temporary in NGINX_TEMPORARY:
        (folder / temporary).mkdir(parents=True, exist_ok=True)
    write_private(folder / "htpasswd", htpasswd_line(user, password))
    served_config = folder / "app-config.js"
    served_config.write_text(app_config())
    nginx_file = folder / "nginx.conf"
    pacs = f"{settings.pacs_host}:{settings.pacs_port}"
    links = settings.layout.viewer_links
    nginx_file.write_text(
        nginx_config(folder, settings.pacs_listen, settings.viewer_port, dist, served_config, links, pacs)
    )
    # -e: nginx's own errors go to the folder from its first line (not to /var/log, which only root can open).
    return [nginx, "-e", str(folder / "nginx-error.log"), "-c", str(nginx_file)]
