"""Files that hold a secret or a patient's data: written 0600 from their first byte, never readable by others
even for a moment; a new one in the data root's private folder has that folder (and the one above it) 0700."""

from __future__ import annotations

import os
from pathlib import Path


def _write(path: Path, content: str, new: bool) -> None:
    """`content` into `path`, 0600; `new`: refuse (FileExistsError) a file that is there already."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if new else os.O_TRUNC)
    descriptor = os.open(path, flags, 0o600)
    os.fchmod(descriptor, 0o600)  # an existing file keeps its mode through O_TRUNC
    with os.fdopen(descriptor, "w") as handle:
        handle.write(content)


def write_private(path: Path, content: str) -> Path:
    """`content` written to `path` (replaced where it exists), 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, content, new=False)
    return path


def kept_secret(path: Path, make: str) -> str:
    """The secret kept at `path`; `make` is written there (0600) the first time. Two processes that ask at once
    get the same one: only the first creates the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _write(path, make, new=True)
    except FileExistsError:
        return path.read_text().strip()
    return make.strip()


def write_new_private(private_dir: Path, path: Path, content: str) -> Path:
    """`content` written to `path`, a new file somewhere under `private_dir`."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(private_dir, 0o700)
    _write(path, content, new=True)
    return path
