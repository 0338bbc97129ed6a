"""Reading files that users hand in, and writing into folders they name, as untrusted: used by both queues.

A file is read only if it is a regular file when opened (never a FIFO or device, never through a link
that appeared after it was checked); a file is written under a temporary name and renamed over its
target, so a symbolic link planted at the target is replaced, never written through.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from shared.errors import InputError


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


@contextmanager
def replacing(target: Path, text: bool = False) -> Iterator[IO[Any]]:
    """A handle on a new file beside `target`, renamed over it once the block ends without an error.

    Readers never see a half-written file, a failed write leaves nothing, and a symbolic link planted at
    `target` is replaced, never written through. The file gets the usual mode (0666 less the umask).
    """
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)  # a leftover of a killed writer (or a planted link: never followed)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    descriptor = os.open(temporary, flags, 0o666)
    try:
        with os.fdopen(descriptor, "w" if text else "wb", **({"newline": ""} if text else {})) as handle:
            yield handle
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
