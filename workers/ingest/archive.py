"""An export zip (what CVAT and Label Studio hand out), unpacked into the run's staging folder before the
release is read: every member checked first, nothing written outside the folder, a size cap on the whole."""

from __future__ import annotations

import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from shared.errors import InputError
from workers.ingest.coco import InputCaps


def is_archive(source: Path) -> bool:
    return source.is_file() and source.suffix.lower() == ".zip"


def unpack(archive: Path, folder: Path, caps: InputCaps) -> Path:
    """The release folder inside `archive`, unpacked under `folder` (the archive's one top folder, if it
    has one)."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            _check_members(archive, members, caps)
            folder.mkdir(parents=True)
            for member in members:
                target = folder / PurePosixPath(member.filename)
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with bundle.open(member) as source, target.open("wb") as out:
                    shutil.copyfileobj(source, out, 2**20)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as error:
        raise InputError(f"{archive} cannot be unpacked ({error}); export the release again") from error
    tops = [path for path in folder.iterdir() if not path.name.startswith("__MACOSX")]
    return tops[0] if len(tops) == 1 and tops[0].is_dir() else folder


def _check_members(archive: Path, members: list[zipfile.ZipInfo], caps: InputCaps) -> None:
    total = 0
    for member in members:
        path = PurePosixPath(member.filename)
        if path.is_absolute() or ".." in path.parts or "\\" in member.filename:
            raise InputError(f"{archive} holds {member.filename!r}, a path that leaves the archive; it is not unpacked")
        if stat.S_ISLNK(member.external_attr >> 16):
            raise InputError(f"{archive} holds {member.filename!r}, a symbolic link; it is not unpacked")
        total += member.file_size
    if total > caps.archive_bytes:
        raise InputError(
            f"{archive} unpacks to {total / 2**30:.1f} GB, over the cap of {caps.archive_bytes / 2**30:.0f} GB "
            "(INGEST_MAX_ARCHIVE_GB); unpack it yourself and pass the folder"
        )
