"""Read and check a FracAtlas release folder (the layout of the public archive).

Everything that can be checked without decoding a picture is checked here, so that bad input fails
before any worker converts anything. pycocotools reads the COCO file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycocotools.coco import COCO

from shared.errors import InputError

COCO_RELATIVE = Path("Annotations") / "COCO JSON" / "COCO_fracture_masks.json"
SPLIT_RELATIVE = Path("Utilities") / "Fracture Split"
FRACTURED, NON_FRACTURED = "Fractured", "Non_fractured"
CATEGORY_NAME = "fractured"
REGIONS = ("hand", "leg", "hip", "shoulder", "mixed")
# Polygons come from a drawing tool: a point may sit a hair outside the picture's edge.
EDGE_TOLERANCE_PX = 2.0


@dataclass(frozen=True)
class InputCaps:
    """Limits on what a release may ask of a worker; INGEST_MAX_* settings set them (docs/security.md)."""

    coco_bytes: int = 256 * 2**20
    coco_depth: int = 32  # a COCO file nests 5 levels deep
    polygons_per_image: int = 256
    points_per_polygon: int = 20_000
    pixels_per_picture: int = 64_000_000  # the release's largest radiograph: 6.6 million


DEFAULT_CAPS = InputCaps()


@dataclass
class ImageEntry:
    file_name: str
    path: Path
    fractured: bool  # from the folder: dataset.csv's `fractured` column is wrong for some images
    attributes: dict[str, int] = field(default_factory=dict)
    coco_id: int | None = None
    coco_size: tuple[int, int] | None = None  # (width, height) after EXIF orientation
    polygons: list[list[float]] = field(default_factory=list)

    @property
    def case_id(self) -> str:
        return os.path.splitext(self.file_name)[0]  # Path(...).stem, at a tenth of the cost for 4,083 images

    @property
    def region(self) -> str:
        return next((r for r in REGIONS if self.attributes.get(r) == 1), "unknown")


@dataclass
class Release:
    root: Path
    images: list[ImageEntry]
    official_split: dict[str, str]  # case id -> train | valid | test
    warnings: list[str]

    @property
    def fractured(self) -> list[ImageEntry]:
        return [image for image in self.images if image.fractured]


def read_release(source: Path, caps: InputCaps = DEFAULT_CAPS) -> Release:
    # Resolved once here, so that every image path under it is absolute without a lookup per file.
    root = Path(source).expanduser().resolve()
    if not root.is_dir():
        raise InputError(
            f"source folder {root} does not exist; pass --source the FracAtlas release folder "
            "(the one that holds images/, Annotations/ and dataset.csv)"
        )
    coco_path = root / COCO_RELATIVE
    for needed in (root / "images" / FRACTURED, root / "images" / NON_FRACTURED, coco_path, root / "dataset.csv"):
        if not needed.exists():
            raise InputError(
                f"{needed} is missing: {root} does not have the FracAtlas release layout "
                "(images/Fractured, images/Non_fractured, 'Annotations/COCO JSON/COCO_fracture_masks.json', "
                "dataset.csv); point --source at the unpacked release"
            )
    for needed in (coco_path, root / "dataset.csv"):
        inside_release(root, needed)
    warnings: list[str] = []
    attributes = _read_attributes(root / "dataset.csv")
    images = [
        ImageEntry(entry.name, inside_release(root, Path(entry.path), entry), folder == FRACTURED,
                   attributes.get(entry.name, {}))
        for folder in (FRACTURED, NON_FRACTURED)
        for entry in sorted(os.scandir(root / "images" / folder), key=lambda e: e.name)  # names sort faster
        if os.path.splitext(entry.name)[1].lower() in (".jpg", ".jpeg", ".png")
    ]  # fmt: skip
    missing_rows = [image.file_name for image in images if image.file_name not in attributes]
    if missing_rows:
        warnings.append(f"{len(missing_rows)} images have no dataset.csv row (first: {missing_rows[0]})")
    _attach_annotations(coco_path, root, {image.file_name: image for image in images}, caps)
    unannotated = [image.file_name for image in images if image.fractured and not image.polygons]
    if unannotated:
        warnings.append(
            f"{len(unannotated)} fractured images have no polygon in the COCO file and are left out of "
            f"the segmentation set (first: {unannotated[0]})"
        )
    return Release(root, images, _read_official_split(root / SPLIT_RELATIVE), warnings)


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


def _read_attributes(path: Path) -> dict[str, dict[str, int]]:
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{path} cannot be read as CSV ({error}); restore it from the release") from error
    if rows and "image_id" not in rows[0]:
        raise InputError(f"{path} has no image_id column; restore it from the release")
    table = {}
    for row in rows:
        name = row.pop("image_id")
        table[name] = {key: int(value) for key, value in row.items() if value not in (None, "") and value.isdigit()}
    return table


def _read_official_split(folder: Path) -> dict[str, str]:
    split: dict[str, str] = {}
    for part in ("train", "valid", "test"):
        path = folder / f"{part}.csv"
        if path.exists():
            with path.open(newline="") as handle:
                for row in csv.DictReader(handle):
                    split[Path(row["image_id"]).stem] = part
    return split


def load_coco(path: Path, caps: InputCaps = DEFAULT_CAPS) -> COCO:
    """pycocotools' index of `path`, once the file has passed every check that needs no picture."""
    size = path.stat().st_size
    if size > caps.coco_bytes:
        raise InputError(
            f"{path} is {size / 2**20:.0f} MB, over the cap of {caps.coco_bytes / 2**20:.0f} MB "
            "(INGEST_MAX_COCO_MB); use the release's file or raise the cap"
        )
    raw = path.read_bytes()
    depth = _nesting(raw)
    if depth > caps.coco_depth:
        raise InputError(
            f"{path} nests {depth} levels deep, over the cap of {caps.coco_depth} (a COCO file nests 5); "
            "restore the file from the release"
        )
    try:
        data = json.loads(raw)
    except UnicodeDecodeError as error:
        raise InputError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8") from None
    except json.JSONDecodeError as error:
        raise InputError(
            f"{path} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); "
            "restore the file from the release"
        ) from error
    _check_coco(data, path, caps)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()
    return coco


def _nesting(raw: bytes) -> int:
    """How deep the JSON's arrays and objects nest (strings left out), without parsing it."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub(b"", raw)):
        depth += 1 if bracket in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(rb"[\[\]{}]")


def _check_coco(data: Any, path: Path, caps: InputCaps) -> None:
    """The structure pycocotools assumes: lists of objects, unique ids and file names, numeric polygons."""
    if not isinstance(data, dict) or not all(isinstance(data.get(key), list) for key in COCO_LISTS):
        raise InputError(f"{path} is not a COCO file: it needs 'images', 'annotations' and 'categories' lists")
    for key in COCO_LISTS:
        for position, item in enumerate(data[key]):
            if not isinstance(item, dict) or not _is_id(item.get("id")):
                raise InputError(f"{path}: entry {position} of '{key}' has no integer id; fix the COCO file")
    _unique(path, "image id", [image["id"] for image in data["images"]])
    _unique(path, "file_name", [str(image.get("file_name")) for image in data["images"]])
    _unique(path, "annotation id", [annotation["id"] for annotation in data["annotations"]])
    polygons: dict[Any, int] = {}
    for annotation in data["annotations"]:
        where = f"{path}: annotation id {annotation['id']}"
        segmentation = annotation.get("segmentation")
        if not isinstance(segmentation, list):
            continue  # RLE or none: refused with its image's name once the polygons are read
        polygons[annotation.get("image_id")] = polygons.get(annotation.get("image_id"), 0) + len(segmentation)
        for polygon in segmentation:
            if isinstance(polygon, list) and len(polygon) > 2 * caps.points_per_polygon:
                raise InputError(
                    f"{where} has a polygon of {len(polygon) // 2} points, over the cap of "
                    f"{caps.points_per_polygon} (INGEST_MAX_POINTS_PER_POLYGON); simplify it"
                )
            bad = next((v for v in polygon if not _is_number(v)), None) if isinstance(polygon, list) else None
            if bad is not None:
                raise InputError(f"{where} has the coordinate {bad!r}, which is not a finite number; fix it")
    crowded = next(((image, count) for image, count in polygons.items() if count > caps.polygons_per_image), None)
    if crowded:
        raise InputError(
            f"{path}: image id {crowded[0]} has {crowded[1]} polygons, over the cap of {caps.polygons_per_image} "
            "(INGEST_MAX_POLYGONS_PER_IMAGE); check the COCO file"
        )


COCO_LISTS = ("images", "annotations", "categories")


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _unique(path: Path, what: str, values: list[Any]) -> None:
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise InputError(
                f"{path}: {what} {value!r} appears more than once; each must be unique, or pictures and polygons "
                "would be mixed up: fix the COCO file"
            )
        seen.add(value)


def _attach_annotations(coco_path: Path, root: Path, by_name: dict[str, ImageEntry], caps: InputCaps) -> None:
    coco = load_coco(coco_path, caps)
    category_ids = [c["id"] for c in coco.dataset["categories"] if str(c.get("name", "")).lower() == CATEGORY_NAME]
    if not category_ids:
        names = ", ".join(repr(c.get("name")) for c in coco.dataset["categories"]) or "none"
        raise InputError(
            f"{coco_path} has no category named '{CATEGORY_NAME}' (it has: {names}); "
            "use the release's COCO_fracture_masks.json"
        )
    for annotation in coco.dataset["annotations"]:
        if annotation.get("image_id") not in coco.imgs:
            raise InputError(
                f"{coco_path}: annotation id {annotation.get('id')} refers to image id "
                f"{annotation.get('image_id')}, which the file's 'images' list does not have; fix or remove it"
            )
    for image_id, info in coco.imgs.items():
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image_id], catIds=category_ids))
        if not annotations:
            continue
        entry = _image_for(info, coco_path, root, by_name)
        entry.coco_id = image_id
        entry.coco_size = (int(info["width"]), int(info["height"]))
        for annotation in annotations:
            entry.polygons.extend(_polygons(annotation, info, coco_path))


def _image_for(info: dict[str, Any], coco_path: Path, root: Path, by_name: dict[str, ImageEntry]) -> ImageEntry:
    name = str(info.get("file_name", ""))
    if not name or "/" in name or "\\" in name or name in (".", "..") or ".." in Path(name).parts:
        raise InputError(
            f"{coco_path}: image id {info.get('id')} has file_name {name!r}; a file name must be a bare "
            "name with no folder or '..' in it: fix the COCO file"
        )
    for key in ("width", "height"):
        if not isinstance(info.get(key), int) or info[key] <= 0:
            raise InputError(f"{coco_path}: image id {info.get('id')} ({name}) has no valid {key}")
    entry = by_name.get(name)
    if entry is None or not entry.fractured:
        where = f"it is in images/{NON_FRACTURED}/" if entry else "no such file exists"
        raise InputError(
            f"{coco_path}: image id {info['id']} names {name}, but {where}; the annotated image must be "
            f"in {root / 'images' / FRACTURED}: restore it or remove its entry from the COCO file"
        )
    return entry


def _polygons(annotation: dict[str, Any], info: dict[str, Any], coco_path: Path) -> list[list[float]]:
    where = f"{coco_path}: annotation id {annotation.get('id')} ({info['file_name']})"
    segmentation = annotation.get("segmentation")
    if not isinstance(segmentation, list) or not segmentation:
        raise InputError(f"{where} has no polygon segmentation (RLE is not expected in FracAtlas); fix it")
    polygons = []
    width, height = info["width"], info["height"]
    for polygon in segmentation:
        if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
            points = len(polygon) / 2 if isinstance(polygon, list) else 0
            raise InputError(f"{where} has a polygon of {points:g} points; a polygon needs at least 3: fix it")
        for x, y in zip(polygon[0::2], polygon[1::2], strict=True):
            if not (
                -EDGE_TOLERANCE_PX <= x <= width + EDGE_TOLERANCE_PX
                and -EDGE_TOLERANCE_PX <= y <= height + EDGE_TOLERANCE_PX
            ):
                raise InputError(
                    f"{where} has the point ({x:.1f}, {y:.1f}) outside the image's {width}x{height} pixels; "
                    "check that the COCO file belongs to these images"
                )
        polygons.append([float(v) for v in polygon])
    return polygons
