"""Service URLs as they are printed, logged and stored: host and port kept, password never."""

from __future__ import annotations

import pytest

from shared.redact import redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0"),
        ("postgresql+psycopg://fracatlas:p%40ss@db.example:5432/fracatlas", "postgresql+psycopg://fracatlas:***@db.example:5432/fracatlas"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("sqlite:////data/jobs.sqlite", "sqlite:////data/jobs.sqlite"),
        ("redis://user:pw@[::1]:6380/1", "redis://user:***@[::1]:6380/1"),
    ],
)  # fmt: skip
def test_a_url_keeps_its_host_and_port_and_loses_its_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_every_url_password_in_an_error_message_is_hidden() -> None:
    message = "Error connecting to redis://:hunter2@10.0.0.5:6379/0; also postgresql://u:pw@db/x failed"
    shown = redact_text(message)
    assert shown == "Error connecting to redis://:***@10.0.0.5:6379/0; also postgresql://u:***@db/x failed"
