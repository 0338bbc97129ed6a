"""A COCO annotation file, read and checked before any picture is decoded: the caps on what it may ask of a
worker, its structure, and each annotation's mask as a segment (polygons or RLE) of one label.

Both release readers use it: the FracAtlas archive's (fracatlas.py) and any COCO export's (coco_release.py).
pycocotools indexes the file; its rasterisation draws the masks later (masks.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pycocotools.coco import COCO

from shared.errors import InputError
from shared.settings import Settings

# Polygons come from a drawing tool: a point may sit a hair outside the picture's edge.
EDGE_TOLERANCE_PX = 2.0
COCO_LISTS = ("images", "annotations", "categories")

# A segment: one annotation's mask, {"label": k, "polygons": [[x0, y0, ...], ...]} or {"label": k, "rle":
# {"size": [height, width], "counts": [...] or "..."}}, in the picture's own (EXIF-upright) pixels.
Segment = dict[str, Any]


@dataclass(frozen=True)
class InputCaps:
    """Limits on what a release may ask of a worker; INGEST_MAX_* settings set them (docs/security.md)."""

    coco_bytes: int = 256 * 2**20
    coco_depth: int = 32  # a COCO file nests 5 levels deep
    polygons_per_image: int = 256  # polygons and RLE masks together
    points_per_polygon: int = 20_000
    pixels_per_picture: int = 64_000_000  # the release's largest radiograph: 6.6 million
    archive_bytes: int = 64 * 2**30  # an export zip, unpacked

    @classmethod
    def of(cls, settings: Settings) -> InputCaps:
        return cls(
            coco_bytes=settings.ingest_max_coco_mb * 2**20,
            coco_depth=settings.ingest_max_coco_depth,
            polygons_per_image=settings.ingest_max_polygons_per_image,
            points_per_polygon=settings.ingest_max_points_per_polygon,
            pixels_per_picture=settings.ingest_max_pixels,
            archive_bytes=settings.ingest_max_archive_gb * 2**30,
        )


DEFAULT_CAPS = InputCaps()


def load_coco(path: Path, caps: InputCaps = DEFAULT_CAPS, unique_file_names: bool = True) -> COCO:
    """pycocotools' index of `path`, once the file has passed every check that needs no picture.

    `unique_file_names=False` lets two image entries name one file (Label Studio lists a picture once per
    annotator); the reader then merges them.
    """
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
    _check_coco(data, path, caps, unique_file_names)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()
    for annotation in data["annotations"]:
        if annotation.get("image_id") not in coco.imgs:
            raise InputError(
                f"{path}: annotation id {annotation.get('id')} refers to image id "
                f"{annotation.get('image_id')}, which the file's 'images' list does not have; fix or remove it"
            )
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


def _check_coco(data: Any, path: Path, caps: InputCaps, unique_file_names: bool) -> None:
    """The structure pycocotools assumes: lists of objects, unique ids and file names, numeric polygons."""
    if not isinstance(data, dict) or not all(isinstance(data.get(key), list) for key in COCO_LISTS):
        raise InputError(f"{path} is not a COCO file: it needs 'images', 'annotations' and 'categories' lists")
    for key in COCO_LISTS:
        for position, item in enumerate(data[key]):
            if not isinstance(item, dict) or not _is_id(item.get("id")):
                raise InputError(f"{path}: entry {position} of '{key}' has no integer id; fix the COCO file")
    _unique(path, "image id", [image["id"] for image in data["images"]])
    if unique_file_names:
        _unique(path, "file_name", [str(image.get("file_name")) for image in data["images"]])
    _unique(path, "annotation id", [annotation["id"] for annotation in data["annotations"]])
    _unique(path, "category id", [category["id"] for category in data["categories"]])
    segments: dict[Any, int] = {}
    for annotation in data["annotations"]:
        where = f"{path}: annotation id {annotation['id']}"
        segmentation = annotation.get("segmentation")
        if isinstance(segmentation, dict):
            segments[annotation.get("image_id")] = segments.get(annotation.get("image_id"), 0) + 1
            _check_rle_form(segmentation, where)
            continue
        if not isinstance(segmentation, list):
            continue  # none: a box, or refused with its image's name once the masks are read
        segments[annotation.get("image_id")] = segments.get(annotation.get("image_id"), 0) + len(segmentation)
        for polygon in segmentation:
            if isinstance(polygon, list) and len(polygon) > 2 * caps.points_per_polygon:
                raise InputError(
                    f"{where} has a polygon of {len(polygon) // 2} points, over the cap of "
                    f"{caps.points_per_polygon} (INGEST_MAX_POINTS_PER_POLYGON); simplify it"
                )
            bad = next((v for v in polygon if not _is_number(v)), None) if isinstance(polygon, list) else None
            if bad is not None:
                raise InputError(f"{where} has the coordinate {bad!r}, which is not a finite number; fix it")
    crowded = next(((image, count) for image, count in segments.items() if count > caps.polygons_per_image), None)
    if crowded:
        raise InputError(
            f"{path}: image id {crowded[0]} has {crowded[1]} polygons, over the cap of {caps.polygons_per_image} "
            "(INGEST_MAX_POLYGONS_PER_IMAGE); check the COCO file"
        )


def _check_rle_form(rle: dict[str, Any], where: str) -> None:
    """An RLE's own shape: size [height, width] and counts (a list of run lengths or pycocotools' string)."""
    size, counts = rle.get("size"), rle.get("counts")
    if not (isinstance(size, list) and len(size) == 2 and all(_is_id(v) and v > 0 for v in size)):
        raise InputError(f"{where} has an RLE mask whose size {size!r} is not [height, width]; fix the COCO file")
    if isinstance(counts, str):
        counts = _compressed_counts(counts, where)
    if not isinstance(counts, list) or not all(_is_id(v) and v >= 0 for v in counts):
        raise InputError(f"{where} has RLE counts that are not a list of run lengths; fix the COCO file")
    if sum(counts) != size[0] * size[1]:
        raise InputError(
            f"{where} has RLE counts that add up to {sum(counts)} pixels, not its size's {size[0]}x{size[1]}; "
            "fix the COCO file"
        )


def _compressed_counts(text: str, where: str) -> list[int]:
    """The run lengths of pycocotools' compressed RLE string (its rleFrString, in Python): checked here, since
    pycocotools decodes runs without bounds checks."""
    counts: list[int] = []
    position = 0
    while position < len(text):
        value = shift = 0
        more = True
        while more:
            if position >= len(text) or not 48 <= ord(text[position]) < 48 + 64:
                raise InputError(f"{where} has a compressed RLE that is cut short or not RLE; fix the COCO file")
            chunk = ord(text[position]) - 48
            value |= (chunk & 0x1F) << shift
            more = bool(chunk & 0x20)
            position, shift = position + 1, shift + 5
            if not more and chunk & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


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


def picture_size(info: dict[str, Any], coco_path: Path) -> tuple[int, int]:
    """(width, height) of an image entry, refused by id and name where either is not a positive integer."""
    for key in ("width", "height"):
        if not _is_id(info.get(key)) or info[key] <= 0:
            raise InputError(f"{coco_path}: image id {info.get('id')} ({info.get('file_name')}) has no valid {key}")
    return int(info["width"]), int(info["height"])


def mask_segment(annotation: dict[str, Any], info: dict[str, Any], coco_path: Path, label: int) -> Segment | None:
    """The annotation's mask as a segment of `label`, or None where it has none (a box-only annotation)."""
    where = f"{coco_path}: annotation id {annotation.get('id')} ({info['file_name']})"
    segmentation = annotation.get("segmentation")
    if isinstance(segmentation, dict):
        width, height = picture_size(info, coco_path)
        if list(segmentation["size"]) != [height, width]:
            h, w = segmentation["size"]
            raise InputError(
                f"{where} has an RLE mask of {w}x{h} pixels, but its image is {width}x{height}; "
                "export the masks again with their pictures"
            )
        counts = segmentation["counts"]
        return {"label": label, "rle": {"size": [height, width], "counts": counts}}
    if not isinstance(segmentation, list) or not segmentation:
        return None
    return {"label": label, "polygons": _polygons(segmentation, info, coco_path, where)}


def _polygons(segmentation: list[Any], info: dict[str, Any], coco_path: Path, where: str) -> list[list[float]]:
    """The polygons of a segmentation, each of 3 points or more, every point on its picture (within a hair)."""
    found = []
    width, height = picture_size(info, coco_path)
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
        found.append([float(v) for v in polygon])
    return found
