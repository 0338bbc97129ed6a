"""What the ingest's three jobs hand each other through the staging folder, typed: the plan (StagedPlan, in
plan.json), each picture as the plan lays it out (PlanItem, in items_*.json) and what its convert job made of
it (Converted, in chunk_*.json)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from workers.imaging.pictures import Picture
from workers.ingest.coco import InputCaps, Segment
from workers.ingest.release import ImageEntry


@dataclass(frozen=True)
class StagedPlan:
    caps: InputCaps  # the caps the plan checked the release against, which the convert jobs decode under
    chunks: list[tuple[int, int]]  # each convert job's [start, stop) of the items
    warnings: list[str]
    official_split: dict[str, str]  # case id -> train | valid | test: FracAtlas's own split, where it has one
    layout: str  # FRACATLAS_LAYOUT or COCO_LAYOUT
    described: str  # the layout in words, as the run says it
    labels: list[str]  # nnU-Net's labels 1..K
    # A zip's pictures are unpacked into the staging folder, gone after the ingest: the manifest names them
    # inside the zip instead (ZIP!/path). [the folder they were unpacked into, the zip]
    unpacked: tuple[str, str] | None

    @classmethod
    def from_json(cls, content: dict[str, Any]) -> StagedPlan:
        chunks = [(start, stop) for start, stop in content["chunks"]]
        caps = InputCaps(**content["caps"])
        return cls(**{**content, "caps": caps, "chunks": chunks, **_tuples(content, "unpacked")})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PlanItem:
    file_name: str  # as the annotation file names it: the key between the jobs
    shown: str  # what the job table, the logs and the manifest name it by (never a DICOM file's name)
    uids: tuple[str, str, str] | None  # a DICOM picture's SOP instance, study and series UIDs: the private map only
    path: str
    case_id: str
    fractured: bool
    region: str
    attributes: dict[str, int]
    coco_id: int | None
    coco_size: tuple[int, int] | None  # (width, height) after EXIF orientation, as COCO says
    segments: list[Segment]
    box_only: bool
    group: str | None
    case: bool  # a case of nnU-Net's dataset (a negative, or a positive with a mask)

    @classmethod
    def of(cls, image: ImageEntry) -> PlanItem:
        return cls(
            file_name=image.file_name,
            shown=image.shown,
            uids=image.uids,
            path=str(image.path),
            case_id=image.case_id,
            fractured=image.fractured,
            region=image.region,
            attributes=image.attributes,
            coco_id=image.coco_id,
            coco_size=image.coco_size,
            segments=image.segments,
            box_only=image.box_only,
            group=image.group,
            # A positive picture without a mask (FracAtlas: no polygon; COCO: boxes only) is left out of
            # the segmentation set, and so is a picture with boxes only.
            case=bool(image.segments) or not (image.fractured or image.box_only),
        )

    @classmethod
    def from_json(cls, content: dict[str, Any]) -> PlanItem:
        return cls(**{**content, **_tuples(content, "uids", "coco_size")})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Converted:
    """A picture as its convert job decoded it."""

    file_name: str
    shown: str
    width: int  # after EXIF orientation, at full resolution
    height: int
    rows: int  # at the working size
    columns: int
    warning: str | None
    upscaled: str
    spacing_mm: tuple[float, float] | None
    exact_hash: str
    perceptual_hash: str
    foreground: int | None  # the case's labelled pixels; None where the picture is no case
    contested: int  # of those, the pixels two labels claimed

    @classmethod
    def of(cls, item: PlanItem, picture: Picture, case: tuple[int, int] | None, hashes: tuple[str, str]) -> Converted:
        rows, columns = picture.pixels.shape
        return cls(
            item.file_name,
            item.shown,
            *picture.oriented_size,
            rows,
            columns,
            picture.warning,
            picture.upscaled,
            picture.spacing_mm,
            *hashes,
            *(case or (None, 0)),
        )

    @classmethod
    def from_json(cls, content: dict[str, Any]) -> Converted:
        return cls(**{**content, **_tuples(content, "spacing_mm")})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _tuples(content: dict[str, Any], *keys: str) -> dict[str, tuple | None]:
    """JSON's lists back to the tuples they were."""
    return {key: None if content[key] is None else tuple(content[key]) for key in keys}
