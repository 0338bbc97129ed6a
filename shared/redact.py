"""Service URLs as they may be printed, logged or stored: the host and port always, the password never."""

from __future__ import annotations

import re
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
