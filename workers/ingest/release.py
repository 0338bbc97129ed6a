"""A release as the ingest sees it, whatever its layout: its pictures (each with its image-level label, its
masks as segments and its group), the names of nnU-Net's labels, and its warnings; and what every layout's
reader shares: every path checked before anything opens it (`inside_release`), a two-column CSV read.

reader.py recognises the layout and hands it to fracatlas.py or coco_release.py, which build these.
"""

from __future__ import annotations

import csv
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import InputError
from shared.layout import case_id
from workers.ingest.coco import Segment

FRACATLAS_LAYOUT, COCO_LAYOUT = "fracatlas", "coco"  # the values of --format


@dataclass
class ImageEntry:
    file_name: str  # as the annotation file names it: a bare name (FracAtlas) or a path under the images folder
    path: Path
    fractured: bool  # the image-level label: FracAtlas's folder, or an annotation of a --positive category
    attributes: dict[str, int] = field(default_factory=dict)
    region: str = "unknown"  # FracAtlas's body region, a stratum of the split
    coco_id: int | None = None
    coco_size: tuple[int, int] | None = None  # (width, height) after EXIF orientation
    segments: list[Segment] = field(default_factory=list)
    box_only: bool = False  # annotated with boxes of the chosen categories only: no mask for nnU-Net
    group: str | None = None  # a patient or study id: --groups, or a DICOM picture's patient pseudonym
    pseudonym: str | None = None  # a DICOM picture's (workers/imaging/pseudonyms.py): its name wherever it is shown
    uids: tuple[str, str, str] | None = None  # a DICOM picture's SOP instance, study and series UIDs

    @property
    def case_id(self) -> str:
        return self.pseudonym or case_id(self.file_name)

    @property
    def shown(self) -> str:
        """The picture as the job table, the logs and the manifest name it: never a DICOM file's name."""
        return self.pseudonym or self.file_name


@dataclass
class Release:
    root: Path
    layout: str  # FRACATLAS_LAYOUT or COCO_LAYOUT
    described: str  # the layout in words, as the plan job says it
    labels: list[str]  # nnU-Net's labels 1..K by name
    images: list[ImageEntry]
    warnings: list[str]
    official_split: dict[str, str] = field(default_factory=dict)  # case id -> train | valid | test

    @property
    def fractured(self) -> list[ImageEntry]:
        return [image for image in self.images if image.fractured]


def read_csv_columns(path: Path, columns: tuple[str, str], expected: str) -> list[tuple[int, tuple[str, str]]]:
    """(line, (first, second)) for each row of a two-column CSV with that header; refused by name otherwise."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not set(columns) <= {name.strip() for name in reader.fieldnames}:
                raise InputError(f"{path} has the columns {reader.fieldnames}; it needs a header line {expected}")
            rows = [
                (reader.line_num, tuple(str(row.get(column) or "").strip() for column in columns)) for row in reader
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{path} cannot be read as a UTF-8 CSV ({error}); save it as CSV: {expected}") from error
    seen: dict[str, int] = {}
    for line, (first, _second) in rows:
        if first in seen:
            raise InputError(f"{path}: {first} is on lines {seen[first]} and {line}; list each picture once")
        seen[first] = line
    return rows  # type: ignore[return-value]


def inside_release(root: Path, path: Path, entry: os.DirEntry[str] | None = None) -> Path:
    """`path` if it is a regular file whose real path lies inside the release; else a refusal by name.

    Checked before anything opens it: a symlink out of the release, a FIFO (opening it blocks), a device
    (reading it never ends) or a folder named like a picture is never read.
    """
    shown = path.relative_to(root) if path.is_relative_to(root) else path
    try:
        path.name.encode()
    except UnicodeEncodeError:
        printable = str(shown).encode("utf-8", "backslashreplace").decode()
        raise InputError(f"{printable} has a name that is not UTF-8; rename it (ASCII names are safest)") from None
    is_plain = entry.is_file(follow_symlinks=False) if entry is not None else path.is_file() and not path.is_symlink()
    if is_plain:
        return path
    if path.is_symlink():
        target = path.resolve()
        if not target.is_relative_to(root):
            raise InputError(
                f"{shown} in the release is a symbolic link to {target}, outside the release; only files inside "
                f"{root} are read: copy the file in or remove the link"
            )
        if target.is_file():
            return target  # read by its real path: the convert job opens it without following links
    kind = _kind_of(path)
    raise InputError(f"{shown} in the release is {kind}, not a regular file; remove it or replace it with the file")


def _kind_of(path: Path) -> str:
    try:
        mode = path.stat().st_mode
    except OSError:
        return "a broken link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"
