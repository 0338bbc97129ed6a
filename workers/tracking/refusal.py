"""A login the tracking server refuses (401/403) is not an outage: sending again with the same login
cannot succeed. An outbox that meets one says so once, naming the user, and stops sending; the spool
keeps its entries and is not replayed until the login changes (a new password in the stack's file or the
environment). The refused login is remembered as a fingerprint (a truncated SHA-256, never the password)
in the spool folder, where the reaper looks before it replays."""

from __future__ import annotations

import hashlib
import json
import logging

from shared.settings import get_settings
from shared.tracking_login import REFUSED, refusal_message

log = logging.getLogger(__name__)
MARKER = "refused-login.json"


def login_fingerprint() -> str:
    """The server and login the workers use now (the local stack's file is read again each time)."""
    settings = get_settings()
    username, password = settings.tracking_credentials
    text = f"{settings.tracking_uri}\n{username or ''}\n{password}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def refusal_code(error: BaseException) -> int | None:
    """401 or 403 where MLflow's client met one; None for anything else (an outage, a bad request)."""
    from mlflow.exceptions import MlflowException

    if isinstance(error, MlflowException):
        code = error.get_http_status_code()
        return code if code in REFUSED else None
    return None


def note_refusal(code: int) -> str:
    """Say it, naming the user, and remember it for the reaper; returns the refused login."""
    settings = get_settings()
    login = login_fingerprint()
    message = refusal_message(settings.tracking_uri or "", settings.tracking_credentials[0], code)
    log.error("%s; what jobs log waits in the spool until the login changes", message)
    folder = get_settings().layout.tracking_spool
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text(json.dumps({"login": login, "status": code}))
    return login


def refused_now() -> bool:
    """Whether the login in use now is the one the server refused last."""
    marker = get_settings().layout.tracking_spool / MARKER
    try:
        return json.loads(marker.read_text())["login"] == login_fingerprint()
    except (OSError, ValueError, KeyError):
        return False


def clear_refusal() -> None:
    (get_settings().layout.tracking_spool / MARKER).unlink(missing_ok=True)
