"""`dispatch rank`: unlabelled pictures in the order they are worth an annotator's time, as MONAI Label's
active-learning strategies have it: where the model doubts most.

Two doubts, each per picture:
- the folds' disagreement: each nnU-Net fold predicts alone, and the variance across folds of each pixel's
  fracture probability is averaged over the picture (0 where every fold says the same; folds trained on
  different data disagree where the picture is unlike what they saw);
- the classifier's doubt: 1 - |2p - 1| for its fracture probability p (1 at p = 0.5, 0 at 0 or 1).
`--by both` orders by the mean of the two's ranks (each as a share of the pictures), `--by folds` or
`--by classifier` by one, `--by random` in a seeded random order: the baseline an active-learning strategy
must beat. Ties go by name, so the order is the same every time.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from shared.defaults import RANK_BY
from workers.nnunet.ensemble import EnsembleMaps


@dataclass
class FoldMaps:
    """One picture's per-fold maps, summed as the folds come (never all kept: they are large)."""

    folds: int = 0
    fracture: np.ndarray | None = None  # the sum of the folds' fracture probabilities
    squares: np.ndarray | None = None  # the sum of their squares
    per_label: np.ndarray | None = None  # the sum of each label's probability

    def add(self, maps: EnsembleMaps) -> None:
        assert maps.per_label is not None  # asked with segmentations=True
        fracture = maps.fracture.astype(np.float64)
        if self.fracture is None:
            self.fracture, self.squares, self.per_label = fracture, fracture**2, maps.per_label.astype(np.float64)
        else:
            assert self.squares is not None and self.per_label is not None
            self.fracture += fracture
            self.squares += fracture**2
            self.per_label += maps.per_label
        self.folds += 1

    def mean_fracture(self) -> np.ndarray:
        assert self.fracture is not None
        return (self.fracture / self.folds).astype(np.float32)

    def disagreement(self) -> float:
        """The mean over pixels of the folds' variance (population: folds alike give exactly 0)."""
        assert self.fracture is not None and self.squares is not None
        mean = self.fracture / self.folds
        return float(np.clip(self.squares / self.folds - mean**2, 0, None).mean())

    def labels(self) -> np.ndarray:
        """The folds' mean probabilities' most likely label per pixel (0 background)."""
        assert self.per_label is not None
        mean = self.per_label / self.folds
        return np.argmax(np.concatenate([(1 - mean.sum(axis=0))[None], mean]), axis=0).astype(np.uint8)


def classifier_doubt(probability: float) -> float:
    return 1 - abs(2 * probability - 1)


@dataclass(frozen=True)
class Scored:
    name: str
    disagreement: float
    probability: float

    @property
    def doubt(self) -> float:
        return classifier_doubt(self.probability)


def ranked(pictures: list[Scored], by: str, seed: int) -> list[tuple[Scored, float]]:
    """The pictures in order, each with the score it was ordered by (higher first)."""
    if by not in RANK_BY:
        raise ValueError(f"--by {by}: one of {', '.join(RANK_BY)}")
    by_name = sorted(pictures, key=lambda p: p.name)
    if by == "random":
        order = by_name[:]
        random.Random(seed).shuffle(order)
        return [(p, 0.0) for p in order]
    folds, doubt = _shares([p.disagreement for p in by_name]), _shares([p.doubt for p in by_name])
    score = {"folds": folds, "classifier": doubt, "both": [(a + b) / 2 for a, b in zip(folds, doubt, strict=True)]}
    chosen = score[by]
    order = sorted(range(len(by_name)), key=lambda i: (-chosen[i], by_name[i].name))
    return [(by_name[i], chosen[i]) for i in order]


def _shares(values: Iterable[float]) -> list[float]:
    """Each value's rank as a share of the values (ties share their mean rank): 1 the highest, near 0 the lowest."""
    values = list(values)
    order = sorted(range(len(values)), key=lambda i: values[i])
    shares = [0.0] * len(values)
    start = 0
    while start < len(order):
        stop = start
        while stop + 1 < len(order) and values[order[stop + 1]] == values[order[start]]:
            stop += 1
        for position in range(start, stop + 1):
            shares[order[position]] = ((start + stop) / 2 + 1) / len(values)
        start = stop + 1
    return shares
