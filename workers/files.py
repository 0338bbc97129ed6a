"""Reading files that users hand in, and writing into folders they name, as untrusted: used by both queues.

A file is read only if it is a regular file when opened (never a FIFO or device, never through a link
that appeared after it was checked); a file is written under a temporary name and renamed over its
target, so a symbolic link planted at the target is replaced, never written through.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from workers.errors import InputError


def read_regular_file(path: Path, follow_links: bool = False) -> bytes:
    """The bytes of `path`, which must be a regular file (not followed through a link unless asked)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_links else os.O_NOFOLLOW)
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        raise InputError(f"{path} cannot be read ({error.strerror}); check the file and its permissions") from None
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise InputError(f"{path} is not a regular file (a FIFO, device or folder); it is not read")
        return handle.read()  # one read: opening files is a large share of a small picture's cost


def write_replacing(target: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write `target` through `write(handle)` into a new file beside it, then rename it into place."""
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
