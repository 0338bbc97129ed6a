"""The HTTP Basic header that Flower and MLflow's basic-auth app ask for."""

from __future__ import annotations

import base64


def basic_auth_header(login: str) -> dict[str, str]:
    """{"Authorization": ...} for a `user:password` login."""
    return {"Authorization": "Basic " + base64.b64encode(login.encode()).decode()}
