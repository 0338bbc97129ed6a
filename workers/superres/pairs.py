"""Training pairs from the release's own large radiographs.

The small pictures (91% of FracAtlas: 373x454 or 454x373) are what an ingest upscales; the large ones
(1760x2140 to 2304x2880, the same kinds of bones) are the truth the network learns from. For scale s, each
large picture is brought down to s times the small pictures' long side (454 px): that is the truth; the input
is the truth shrunk by s with Pillow's bicubic filter, which low-passes first (its support grows with the
factor), as an optical system's blur does. No noise and no JPEG recompression are added: the small pictures'
own JPEG artefacts are not modelled (docs/superres.md lists it among the limits).

A large picture is one whose long side is at least `min_long_side` and at least s times the small
pictures' (the truth is never upscaled). A seeded share of the large pictures is held out, never trained
on: the figures are measured on them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from shared.defaults import PICTURE_SUFFIXES
from shared.errors import InputError
from workers.imaging.pictures import load_picture


@dataclass(frozen=True)
class Pair:
    name: str
    small: np.ndarray  # (rows, columns) uint8: the input, at the small pictures' scale
    truth: np.ndarray  # (scale rows, scale columns) uint8


@dataclass(frozen=True)
class PairSet:
    train: list[Pair]
    held_out: list[Pair]


def picture_sizes(release: Path) -> dict[Path, tuple[int, int]]:
    """Every picture under `release`/images and its stored (width, height), read from its header."""
    folder = release / "images"
    if not folder.is_dir():
        raise InputError(
            f"{release} has no images/ folder; give an unpacked release as --source (FracAtlas, or a COCO "
            "export whose pictures are under images/)"
        )
    sizes = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in PICTURE_SUFFIXES and path.is_file():
            try:
                with Image.open(path) as image:
                    sizes[path] = image.size
            except OSError:
                continue  # an unreadable file: the ingest names it; here it is simply no truth
    return sizes


def large_pictures(release: Path, min_long_side: int) -> list[Path]:
    large = [path for path, size in picture_sizes(release).items() if max(size) >= min_long_side]
    if len(large) < 2:
        raise InputError(
            f"{release} has {len(large)} picture(s) with a long side of {min_long_side} px or more; sr-train learns "
            "from the release's large radiographs and holds some out: give the full release (or lower --min-long-side)"
        )
    return large


def is_held_out(name: str, fraction: float, seed: int) -> bool:
    """A stable choice per file name: the same pictures are held out whatever else is in the folder."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def make_pair(path: Path, scale: int, small_long_side: int) -> Pair:
    truth = load_picture(path, scale * small_long_side).pixels
    rows, columns = (side - side % scale for side in truth.shape)  # whole input pixels
    truth = np.ascontiguousarray(truth[:rows, :columns])
    small = Image.fromarray(truth).resize((columns // scale, rows // scale), Image.Resampling.BICUBIC)
    return Pair(path.name, np.asarray(small), truth)


def make_pairs(
    release: Path, scale: int, small_long_side: int, min_long_side: int, held_out: float, seed: int
) -> PairSet:
    large = large_pictures(release, max(min_long_side, scale * small_long_side))
    chosen = {path.name for path in large if is_held_out(path.name, held_out, seed)}
    if not chosen or len(chosen) == len(large):  # at least one of each, whatever the draw
        chosen = {large[0].name} if not chosen else chosen - {large[0].name}
    pairs = [make_pair(path, scale, small_long_side) for path in large]
    return PairSet([p for p in pairs if p.name not in chosen], [p for p in pairs if p.name in chosen])
