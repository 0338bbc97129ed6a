"""A bundle is installed only whole: each way it can be changed after the export is refused by name."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from shared.bundles import CARD, CHECKSUMS, FORMAT, checked_card
from shared.errors import InputError

CARD_CONTENT = {
    "format": FORMAT,
    "data": {"dataset_id": 400},
    "segmentation": {"configuration": "2d", "trainer": "nnUNetTrainer", "plans": "nnUNetPlans", "folds": [0, 1]},
}


def write_bundle(path: Path, files: dict[str, bytes], sums: dict[str, bytes] | None = None) -> Path:
    """A bundle of `files` and their SHA256SUMS (of `sums` where given: what the export saw)."""
    listed = sums if sums is not None else files
    lines = "".join(f"{hashlib.sha256(content).hexdigest()}  {name}\n" for name, content in listed.items())
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
        archive.writestr(CHECKSUMS, lines)
    return path


def files(**card: object) -> dict[str, bytes]:
    content = {**CARD_CONTENT, **card}
    return {CARD: json.dumps(content).encode(), "classifier/classifier.pt": b"weights" * 1000}


def test_a_whole_bundle_gives_its_card(tmp_path: Path) -> None:
    assert checked_card(write_bundle(tmp_path / "b.zip", files()))["data"]["dataset_id"] == 400


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("content", "classifier/classifier.pt does not match its SHA-256 in SHA256SUMS"),
        ("added", "extra.py is not in SHA256SUMS"),
        ("removed", "classifier/classifier.pt is in SHA256SUMS but not in the bundle"),
        ("format", "is a bundle of format 'fracatlas-jobs-bundle/9'; this installation reads"),
        ("field", "model_card.json has no segmentation.folds"),
        ("escape", "holds '../evil.py', a name outside the bundle's folder"),
    ],
)
def test_a_changed_bundle_is_refused_by_name(tmp_path: Path, change: str, expected: str) -> None:
    made = files()
    if change == "content":
        bundle = write_bundle(tmp_path / "b.zip", {**made, "classifier/classifier.pt": b"weightz" * 1000}, made)
    elif change == "added":
        bundle = write_bundle(tmp_path / "b.zip", {**made, "extra.py": b"import os"}, made)
    elif change == "removed":
        bundle = write_bundle(tmp_path / "b.zip", {CARD: made[CARD]}, made)
    elif change == "format":
        bundle = write_bundle(tmp_path / "b.zip", files(format="fracatlas-jobs-bundle/9"))
    elif change == "field":
        segmentation = {key: value for key, value in CARD_CONTENT["segmentation"].items() if key != "folds"}
        bundle = write_bundle(tmp_path / "b.zip", files(segmentation=segmentation))
    else:
        bundle = write_bundle(tmp_path / "b.zip", {**made, "../evil.py": b""})
    with pytest.raises(InputError) as refused:
        checked_card(bundle)
    assert expected in str(refused.value) and str(bundle) in str(refused.value)


def test_one_byte_flipped_in_the_zip_is_refused_as_damaged(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b.zip", files())
    content = bytearray(bundle.read_bytes())
    with zipfile.ZipFile(bundle) as archive:
        member = archive.getinfo("classifier/classifier.pt")
    content[member.header_offset + 30 + len(member.filename) + 5] ^= 0xFF  # inside its compressed data
    bundle.write_bytes(bytes(content))
    with pytest.raises(InputError, match="classifier/classifier.pt (is damaged|does not match)"):
        checked_card(bundle)


def test_not_a_zip_is_refused(tmp_path: Path) -> None:
    (tmp_path / "b.zip").write_text("hello")
    with pytest.raises(InputError, match="b.zip is not a readable zip"):
        checked_card(tmp_path / "b.zip")
