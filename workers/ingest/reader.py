"""Which layout a release is (the FracAtlas archive or any COCO export, unpacked already where it came as a
zip), read by that layout's reader (fracatlas.py, coco_release.py), with the groups of a --groups file added."""

from __future__ import annotations

from pathlib import Path

from shared.contract import IngestRequest
from shared.errors import InputError
from workers.ingest.coco import DEFAULT_CAPS, InputCaps
from workers.ingest.coco_release import read_coco_release
from workers.ingest.fracatlas import is_fracatlas, read_fracatlas
from workers.ingest.release import COCO_LAYOUT, FRACATLAS_LAYOUT, Release, read_csv_columns


def read_release(
    source: Path, request: IngestRequest, caps: InputCaps = DEFAULT_CAPS, key: bytes | None = None
) -> Release:
    """The release at `source` (a folder, already unpacked where it came as a zip), as `request` asks; `key`:
    the data root's pseudonym key, where a COCO release may hold DICOM pictures."""
    # Resolved once here, so that every image path under it is absolute without a lookup per file.
    root = Path(source).expanduser().resolve()
    if not root.is_dir():
        raise InputError(
            f"source folder {root} does not exist; pass --source the release folder (a FracAtlas archive or a "
            "folder holding a COCO file and its pictures)"
        )
    layout = request.format if request.format != "auto" else FRACATLAS_LAYOUT if is_fracatlas(root) else COCO_LAYOUT
    if layout == FRACATLAS_LAYOUT:
        for option in ("categories", "positive", "labels", "coco", "images"):
            if getattr(request, option):
                raise InputError(
                    f"--{option} applies to a COCO release; {root} is read as the FracAtlas archive, whose one "
                    "category is 'fractured' and whose labels are its folders (pass --format coco to read it as COCO)"
                )
        release = read_fracatlas(root, caps)
    else:
        release = read_coco_release(root, request, caps, key)
    if request.groups:
        attach_groups(Path(request.groups), release)
    return release


def attach_groups(path: Path, release: Release) -> None:
    """--groups: a CSV of file_name, group (a patient or study id); a picture it leaves out is its own group."""
    rows = read_csv_columns(path, ("file_name", "group"), "file_name,group (a patient or study id per picture)")
    by_name = {image.file_name: image for image in release.images}
    unknown = []
    for line, (name, group) in rows:
        if not group:
            raise InputError(f"{path}, line {line}: {name} has an empty group; give every listed picture its group")
        image = by_name.get(name)
        if image is None:
            unknown.append(name)
        else:
            image.group = group
    if unknown:
        release.warnings.append(
            f"{len(unknown)} rows of {path.name} name no picture of the release (first: {unknown[0]})"
        )
    missing = [image.file_name for image in release.images if image.group is None]
    if missing:
        release.warnings.append(
            f"{len(missing)} pictures are in no group of {path.name} and are each their own (first: {missing[0]})"
        )
