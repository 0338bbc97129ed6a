"""Pseudonyms for DICOM pictures, so that nothing read from a DICOM header that identifies a person (PS3.15
Annex E: names, ids, dates, the UIDs themselves) reaches nnU-Net's case ids, the manifest, the job table,
a log or MLflow.

A picture's pseudonym is a keyed hash (HMAC-SHA256) of its SOP Instance UID, its patient a keyed hash of its
PatientID (the split's group, so that one patient's radiographs never straddle train and test). The key is
made once per data root and kept, with the map from each pseudonym to its file and UIDs, under the data
root's private/ folder, readable by its owner alone.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import os
import secrets
from pathlib import Path

from workers.files import replacing

KEY_FILE = "pseudonym.key"
PICTURE_PREFIX, PATIENT_PREFIX = "dcm-", "patient-"
MAP_COLUMNS = ("pseudonym", "patient", "file", "sop_instance_uid", "study_instance_uid", "series_instance_uid")


def private_key(private_dir: Path) -> bytes:
    """The data root's pseudonym key, made on first use (0600 in a 0700 folder)."""
    private_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(private_dir, 0o700)
    path = private_dir / KEY_FILE
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return bytes.fromhex(path.read_text().strip())
    key = secrets.token_bytes(32)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key.hex())
    return key


def _keyed(key: bytes, value: str, length: int) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:length]


def picture_pseudonym(key: bytes, sop_instance_uid: str) -> str:
    return PICTURE_PREFIX + _keyed(key, sop_instance_uid, 16)


def patient_pseudonym(key: bytes, patient_id: str) -> str:
    return PATIENT_PREFIX + _keyed(key, patient_id, 12)


def write_map(path: Path, rows: list[tuple[str, ...]]) -> None:
    """The pseudonym map of one dataset (MAP_COLUMNS), its owner's alone."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(MAP_COLUMNS)
    writer.writerows(rows)
    with replacing(path, text=True) as handle:
        os.chmod(handle.fileno(), 0o600)
        handle.write(buffer.getvalue())
