"""The pre-start step of every container: refuse the example passwords, then wait until the broker and the
job table answer."""

from __future__ import annotations

import sys
import time

import redis
from sqlalchemy import text

from shared.db.engine import get_engine
from shared.redact import redact_text, redact_url
from shared.secrets_check import refusal
from shared.settings import get_settings

TIMEOUT_S = 120


def wait_for_services(timeout_s: float = TIMEOUT_S) -> None:
    settings = get_settings()
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            redis.Redis.from_url(settings.broker, socket_connect_timeout=2).ping()
            with get_engine().connect() as connection:
                connection.execute(text("SELECT 1"))
            return
        except Exception as error:  # noqa: BLE001 - any failure means "not yet"; the last one is reported
            last_error = error
            time.sleep(1)
    print(
        f"broker {redact_url(settings.broker)} or job table {redact_url(settings.db_url)} not reachable: "
        f"{redact_text(str(last_error))}",
        file=sys.stderr,
    )
    raise SystemExit(1)


if __name__ == "__main__":
    refused = refusal(get_settings())
    if refused:
        print(refused, file=sys.stderr)
        raise SystemExit(1)
    wait_for_services()
