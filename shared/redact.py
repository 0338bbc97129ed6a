"""What may be printed, logged or stored: service URLs with the host and port always, the password never; and
nothing of the DICOM libraries' own messages, which quote UIDs and header values."""

from __future__ import annotations

import logging
import re
import warnings
from urllib.parse import urlsplit, urlunsplit

# user:password@ inside any URL of a longer text (an exception's message, say).
_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]+)@", re.I)


def redact_url(url: str) -> str:
    """`redis://:secret@host:6379/0` -> `redis://:***@host:6379/0`; a URL without a password is unchanged."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def redact_text(text: str) -> str:
    """Every URL password in free text (an error message that quotes a URL) replaced by ***."""
    return _CREDENTIALS.sub(lambda match: f"{match['scheme']}{match['user']}:***@", text)


# Their messages quote UIDs and header values (highdicom logs each source's SOP Instance UID, dicomweb-client
# each request's study and series); the system's own messages say what a user needs, by pseudonym.
DICOM_LIBRARIES = ("pydicom", "highdicom", "dicomweb_client")


def silence_dicom_libraries() -> None:
    """No log record or warning of the DICOM libraries reaches a log, a printed line or the job table."""
    import pydicom  # noqa: F401 - first: importing it sets its logger's level

    for name in DICOM_LIBRARIES:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)  # their modules' loggers inherit it
    warnings.filterwarnings("ignore", module=rf"({'|'.join(DICOM_LIBRARIES)})(\.|$)")
