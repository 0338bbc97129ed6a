"""The stack refuses to start with the passwords of .env.example: they are public."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from shared.settings import Settings

EXAMPLE_SECRET = "change-me"  # what .env.example ships in every password field


def example_secrets(settings: Settings) -> list[str]:
    """The settings that still hold the example password, by name."""
    found = []
    urls = {"DATABASE_URL (POSTGRES_PASSWORD)": settings.db_url, "BROKER_URL (REDIS_PASSWORD)": settings.broker_url}
    for name, url in urls.items():
        if urlsplit(url).password == EXAMPLE_SECRET:
            found.append(name)
    if settings.flower_basic_auth and settings.flower_basic_auth.split(":", 1)[-1] == EXAMPLE_SECRET:
        found.append("FLOWER_BASIC_AUTH")
    if settings.mlflow_password == EXAMPLE_SECRET:
        found.append("MLFLOW_TRACKING_PASSWORD (MLFLOW_ADMIN_PASSWORD)")
    # The MLflow server's own variable (the mlflow service's container sets it; no setting reads it).
    if os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY") == EXAMPLE_SECRET:
        found.append("MLFLOW_FLASK_SERVER_SECRET_KEY (MLFLOW_SECRET_KEY)")
    return found


def refusal(settings: Settings) -> str | None:
    found = example_secrets(settings)
    if not found:
        return None
    return (
        f"{', '.join(found)} still hold the example password '{EXAMPLE_SECRET}' of .env.example; "
        "set your own in .env (for example: python -c 'import secrets; print(secrets.token_urlsafe(24))')"
    )
