"""Links into the stack's own viewer that name no patient data.

OHIF opens a study by its UIDs in the URL, and a study's UIDs are patient data (PS3.15 Annex E): they may not
enter the job table, MLflow or a log. So a link is `VIEWER/studies/TOKEN`, a random token, and the viewer's
nginx (behind the PACS's login) answers it from DATA_ROOT/private/viewer-links/TOKEN.html, a page that sends
the browser on to the study with its SEG in the viewport."""

from __future__ import annotations

import html
import secrets
from urllib.parse import urlencode

from shared.private_files import write_new_private
from shared.settings import Settings

LINKS_PATH = "/studies/"


def viewer_link(settings: Settings, pacs_url: str, study: str, series: str | None = None) -> str | None:
    """A link to `study` in the stack's own viewer, opened on `series` (a SEG: laid over its radiograph);
    None where `pacs_url` is not the stack's own PACS (its viewer would not hold the study)."""
    own = settings.own_pacs
    if own is None or pacs_url.rstrip("/") != own[0]:
        return None
    query = {"StudyInstanceUIDs": study, **({"initialSeriesInstanceUID": series} if series else {})}
    target = html.escape(f"/viewer?{urlencode(query)}", quote=True)
    token = secrets.token_urlsafe(18)
    page = (
        f'<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0; url={target}">'
        f'<title>the study in the viewer</title><a href="{target}">open the study in the viewer</a>\n'
    )
    write_new_private(settings.layout.private_dir, settings.layout.viewer_links / f"{token}.html", page)
    return f"{own[1]}{LINKS_PATH}{token}"
