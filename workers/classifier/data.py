"""The classification cache written by ingest (every image letterboxed on a square of the working size, label
from its folder) and its seeded split, which keeps each group of duplicate pictures on one side and leaves
out the pictures the ingest excluded (a conflicting duplicate)."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.errors import InputError
from shared.layout import CACHE_GEOMETRY, CACHE_IMAGES, CACHE_LABELS

TRAIN, VAL, TEST = "train", "val", "test"


@dataclass
class ClassificationSet:
    folder: Path
    images: np.ndarray  # (N, size, size) uint8, memory-mapped
    labels: np.ndarray  # (N,) int64: 1 fractured
    regions: list[str]
    image_ids: list[str]
    segmentation_split: list[str]  # train | test for nnU-Net's cases, "" for images it never saw
    groups: list[str]  # each image's group of duplicates (its own case id where it has no copy)
    excluded: list[bool]  # left out of every split (the ingest's --conflicts)
    shapes: list[tuple[int, int]]  # each picture's (rows, columns) inside its letterboxed square
    square: bool  # the pictures were squashed to the square (the notebook's layout), not letterboxed

    @property
    def working_size(self) -> int:
        """The side of the cache's squares: the ingest's working size."""
        return int(self.images.shape[-1])


def load_set(folder: Path) -> ClassificationSet:
    if not (folder / CACHE_IMAGES).exists() or not (folder / CACHE_LABELS).exists():
        raise InputError(f"no classification cache in {folder}; run `dispatch ingest` for this dataset first")
    with (folder / CACHE_LABELS).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    images = np.load(folder / CACHE_IMAGES, mmap_mode="r")
    if len(rows) != len(images):
        raise InputError(f"{folder}: {len(rows)} rows in {CACHE_LABELS} but {len(images)} images; ingest again")
    if "group" not in rows[0] or not (folder / CACHE_GEOMETRY).exists():
        raise InputError(f"{folder} was made by an older ingest (no duplicate groups); run `dispatch ingest` again")
    square = bool(json.loads((folder / CACHE_GEOMETRY).read_text())["square"])
    return ClassificationSet(
        folder=folder,
        images=images,
        labels=np.array([int(row["label"]) for row in rows], dtype=np.int64),
        regions=[row["region"] for row in rows],
        image_ids=[row["image_id"] for row in rows],
        segmentation_split=[row["segmentation_split"] for row in rows],
        groups=[row["group"] for row in rows],
        excluded=[bool(row["excluded"]) for row in rows],
        shapes=[(int(row["rows"]), int(row["columns"])) for row in rows],
        square=square,
    )


def stratified_split(
    labels: np.ndarray,
    regions: list[str],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    groups: list[str] | None = None,
    excluded: list[bool] | None = None,
) -> dict[str, list[int]]:
    """Indices for train, val and test, stratified by (label, body region) and seeded; the images of one
    group (duplicates) go to one part together, the excluded ones to none.

    Each stratum's groups are shuffled and cut at their cumulative shares, with the rounding carried from one
    stratum to the next so that the totals match the fractions even when the strata are small.
    """
    if val_fraction <= 0 or test_fraction <= 0 or val_fraction + test_fraction >= 1:
        raise InputError(
            f"--val-fraction {val_fraction} and --test-fraction {test_fraction} must be positive and sum below 1"
        )
    members_of: dict[str, list[int]] = defaultdict(list)
    for index in range(len(labels)):
        if not (excluded and excluded[index]):
            members_of[groups[index] if groups else str(index)].append(index)
    strata: dict[tuple[int, str], list[str]] = defaultdict(list)
    for group, indices in members_of.items():  # insertion order: the first image of each group
        strata[(int(labels[indices[0]]), regions[indices[0]])].append(group)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {TRAIN: [], VAL: [], TEST: []}
    carried = {VAL: 0.0, TEST: 0.0}
    for key in sorted(strata):
        members = strata[key]
        rng.shuffle(members)
        counts = {}
        for part, fraction in ((TEST, test_fraction), (VAL, val_fraction)):
            wanted = len(members) * fraction + carried[part]
            counts[part] = min(math.floor(wanted + 0.5), len(members) - sum(counts.values()))
            carried[part] = wanted - counts[part]
        cuts = {TEST: members[: counts[TEST]], VAL: members[counts[TEST] : counts[TEST] + counts[VAL]]}
        cuts[TRAIN] = members[counts[TEST] + counts[VAL] :]
        for part, chosen in cuts.items():
            parts[part] += [index for group in chosen for index in members_of[group]]
    for part, indices in parts.items():
        classes = set(labels[indices].tolist())
        if classes != {0, 1}:
            raise InputError(
                f"the {part} split holds {len(indices)} image(s) of {'one class' if classes else 'no class'}: "
                f"{len(labels)} images are too few for this split; ingest more images or change the fractions"
            )
    return {part: sorted(indices) for part, indices in parts.items()}
