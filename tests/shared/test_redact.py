"""Service URLs as they are printed, logged and stored: host and port kept, password never; the DICOM
libraries' messages, which quote UIDs and header values, never."""

from __future__ import annotations

import logging

import pytest

from shared.redact import redact_text, redact_url, silence_dicom_libraries


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


def test_the_dicom_libraries_say_nothing(caplog: pytest.LogCaptureFixture) -> None:
    import warnings

    from pydicom.dataset import Dataset

    silence_dicom_libraries()
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as warned:
        logging.getLogger("highdicom.seg.sop").info('copy attributes from dataset "1.2.3.4"')
        logging.getLogger("dicomweb_client.web").warning('search for series of study "1.2.3"')
        Dataset().PatientName = "Doe^" + "J" * 80  # pydicom warns that it is too long
    assert not caplog.records and not warned
