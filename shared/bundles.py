"""The model bundle's format (`dispatch export` writes it, `dispatch import` reads it) and the check that a
bundle is whole: one of this format, every file listed in SHA256SUMS with the digest it had when exported,
nothing else in it, no name that would land outside the folder it is unpacked into.

The dispatcher checks a bundle before it records an import (the user hears at once); the worker checks it
again before it installs anything (the file may have changed since). Standard library only: the dispatcher
loads no torch and no nnU-Net.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, Any

from shared.errors import InputError

FORMAT = "fracatlas-jobs-bundle/1"
CHECKSUMS = "SHA256SUMS"
CARD = "model_card.json"
CARD_MARKDOWN = "MODEL_CARD.md"
NNUNET_FOLDER = "nnunet"  # nnU-Net's own export zip, and the trainer class it needs where not built in
CLASSIFIER_FOLDER = "classifier"
# The training release's pictures as two hashes each (workers/ingest/duplicates.py), nothing else: where
# `dispatch evaluate` runs at another site, it leaves out a cohort's copies of them.
PICTURE_HASHES = "data/picture_hashes.csv"
HASH_COLUMNS = ("exact_hash", "perceptual_hash")
# What an import reads of the card, by section.
CARD_FIELDS = {
    "data": ("dataset_id",),
    "segmentation": ("configuration", "trainer", "plans", "folds"),
    "classifier": ("input", "backbone", "threshold", "figures"),
}


def sha256(handle: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(2**20), b""):
        digest.update(block)
    return digest.hexdigest()


def checked_card(bundle: Path) -> dict[str, Any]:
    """The bundle's model card, once the bundle is known whole; an InputError that names the bundle and the
    file otherwise."""
    try:
        archive = zipfile.ZipFile(bundle)
    except (OSError, zipfile.BadZipFile) as error:
        raise InputError(f"{bundle} is not a readable zip ({error}); pass the bundle `dispatch export` wrote") from None
    with archive:
        names = [info.filename for info in archive.infolist() if not info.is_dir()]
        unsafe = [name for name in names if not _safe(name)]
        if unsafe:
            raise InputError(f"{bundle} holds {unsafe[0]!r}, a name outside the bundle's folder; it is not unpacked")
        if CARD not in names:
            raise InputError(f"{bundle} has no {CARD}: it is not a bundle `dispatch export` wrote")
        with _member(bundle, archive, CARD) as handle:
            card = _card(bundle, handle.read())
        if CHECKSUMS not in names:
            raise InputError(f"{bundle} has no {CHECKSUMS}; without it nothing in it can be trusted")
        with _member(bundle, archive, CHECKSUMS) as handle:
            listed = _listed(bundle, handle.read().decode("utf-8", "replace"))
        for name in sorted(set(names) - {CHECKSUMS}):
            if name not in listed:
                raise InputError(f"{bundle}: {name} is not in {CHECKSUMS}; it was added after the export")
            with _member(bundle, archive, name) as handle:
                digest = sha256(handle)
            if digest != listed[name]:
                raise InputError(
                    f"{bundle}: {name} does not match its SHA-256 in {CHECKSUMS}: it changed after the export; "
                    "ask for the bundle again"
                )
        missing = sorted(set(listed) - set(names))
        if missing:
            raise InputError(f"{bundle}: {missing[0]} is in {CHECKSUMS} but not in the bundle; ask for it again")
    _check_fields(bundle, card)
    return card


@contextmanager
def _member(bundle: Path, archive: zipfile.ZipFile, name: str) -> Iterator[IO[bytes]]:
    """One file of the bundle; one the zip itself finds damaged (its CRC, its stream) is refused by name."""
    try:
        with archive.open(name) as handle:
            yield handle
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise InputError(f"{bundle}: {name} is damaged ({error}); ask for the bundle again") from None


def _safe(name: str) -> bool:
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts and "\\" not in name


def _card(bundle: Path, content: bytes) -> dict[str, Any]:
    try:
        card = json.loads(content)
    except ValueError:
        raise InputError(f"{bundle}: {CARD} is not JSON") from None
    found = card.get("format") if isinstance(card, dict) else None
    if found != FORMAT:
        raise InputError(
            f"{bundle} is a bundle of format {found!r}; this installation reads {FORMAT!r}: export it again with "
            "this version of the project"
        )
    return card


def _check_fields(bundle: Path, card: dict[str, Any]) -> None:
    for section, fields in CARD_FIELDS.items():
        if section == "classifier" and section not in card:
            continue  # a bundle of folds alone
        missing = [field for field in fields if not isinstance(card.get(section), dict) or field not in card[section]]
        if missing:
            raise InputError(f"{bundle}: {CARD} has no {section}.{missing[0]}; export the bundle again")


def _listed(bundle: Path, text: str) -> dict[str, str]:
    """SHA256SUMS as `sha256sum` writes it: a digest, two spaces, the name."""
    listed = {}
    for number, line in enumerate(text.splitlines(), start=1):
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name:
            raise InputError(f"{bundle}: line {number} of {CHECKSUMS} is not 'SHA-256  name'")
        listed[name] = digest.lower()
    return listed
