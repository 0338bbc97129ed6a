"""A new file in the data root's private folder: the folder (and the private folder above it) 0700, the file
0600 from its first byte and never one that exists already."""

from __future__ import annotations

import os
from pathlib import Path


def write_new_private(private_dir: Path, path: Path, content: str) -> Path:
    """`content` written to `path`, a new file somewhere under `private_dir`."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(private_dir, 0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(content)
    return path
