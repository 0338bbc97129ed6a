"""Whether the MLflow server the workers log to accepts their login: checked by `make up`, so that a wrong
pair is refused by name at once instead of looking like an outage in every job's log (docs/tracking.md)."""

from __future__ import annotations

import urllib.error
import urllib.request

from shared.basic_auth import basic_auth_header
from shared.redact import redact_url

REFUSED = (401, 403)


def refused_login(url: str, username: str | None, password: str, timeout: float = 10.0) -> str | None:
    """A message naming the user when the server at `url` answers 401 or 403 to this login; None when it
    accepts it, answers otherwise or cannot be reached (an outage is not a refusal)."""
    request = urllib.request.Request(
        f"{url.rstrip('/')}/api/2.0/mlflow/experiments/search?max_results=1",
        headers=basic_auth_header(f"{username}:{password}") if username else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return None
    except urllib.error.HTTPError as error:
        return refusal_message(url, username, error.code) if error.code in REFUSED else None
    except OSError:
        return None


def refusal_message(url: str, username: str | None, code: int) -> str:
    who = f"the credentials of user {username}" if username else "requests without credentials"
    return (
        f"MLflow refused {who} ({code}) at {redact_url(url)}: set MLFLOW_TRACKING_USERNAME and "
        "MLFLOW_TRACKING_PASSWORD to a login it accepts (or MLFLOW_TRACKING_URI=none for no tracking)"
    )
