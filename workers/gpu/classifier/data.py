"""The classification cache written by ingest (every image, label from its folder) and its seeded split."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.errors import InputError
from shared.layout import CACHE_IMAGES, CACHE_LABELS

TRAIN, VAL, TEST = "train", "val", "test"


@dataclass
class ClassificationSet:
    folder: Path
    images: np.ndarray  # (N, size, size) uint8, memory-mapped
    labels: np.ndarray  # (N,) int64: 1 fractured
    regions: list[str]
    image_ids: list[str]
    segmentation_split: list[str]  # train | test for nnU-Net's cases, "" for images it never saw

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])


def load_set(folder: Path) -> ClassificationSet:
    if not (folder / CACHE_IMAGES).exists() or not (folder / CACHE_LABELS).exists():
        raise InputError(f"no classification cache in {folder}; run `dispatch ingest` for this dataset first")
    with (folder / CACHE_LABELS).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    images = np.load(folder / CACHE_IMAGES, mmap_mode="r")
    if len(rows) != len(images):
        raise InputError(f"{folder}: {len(rows)} rows in {CACHE_LABELS} but {len(images)} images; ingest again")
    return ClassificationSet(
        folder=folder,
        images=images,
        labels=np.array([int(row["label"]) for row in rows], dtype=np.int64),
        regions=[row["region"] for row in rows],
        image_ids=[row["image_id"] for row in rows],
        segmentation_split=[row["segmentation_split"] for row in rows],
    )


def stratified_split(
    labels: np.ndarray, regions: list[str], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[int]]:
    """Indices for train, val and test, stratified by (label, body region) and seeded.

    Each stratum is shuffled and cut at its cumulative shares, with the rounding carried from one stratum
    to the next so that the totals match the fractions even when the strata are small.
    """
    if val_fraction <= 0 or test_fraction <= 0 or val_fraction + test_fraction >= 1:
        raise InputError(
            f"--val-fraction {val_fraction} and --test-fraction {test_fraction} must be positive and sum below 1"
        )
    strata: dict[tuple[int, str], list[int]] = defaultdict(list)
    for index, (label, region) in enumerate(zip(labels.tolist(), regions, strict=True)):
        strata[(label, region)].append(index)
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
        parts[TEST] += members[: counts[TEST]]
        parts[VAL] += members[counts[TEST] : counts[TEST] + counts[VAL]]
        parts[TRAIN] += members[counts[TEST] + counts[VAL] :]
    for part, indices in parts.items():
        classes = set(labels[indices].tolist())
        if classes != {0, 1}:
            raise InputError(
                f"the {part} split holds {len(indices)} image(s) of {'one class' if classes else 'no class'}: "
                f"{len(labels)} images are too few for this split; ingest more images or change the fractions"
            )
    return {part: sorted(indices) for part, indices in parts.items()}
