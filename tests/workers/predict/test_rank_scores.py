"""`dispatch rank`'s scores: folds that agree disagree by exactly nothing, folds that differ do; the
classifier's doubt peaks at one half; the order is the same every time, ties by name; random is seeded."""

from __future__ import annotations

import numpy as np
import pytest

from workers.nnunet.ensemble import EnsembleMaps
from workers.predict.rank import FoldMaps, Scored, classifier_doubt, ranked


def fold_maps(maps: list[np.ndarray]) -> FoldMaps:
    summed = FoldMaps()
    for fracture in maps:
        summed.add(EnsembleMaps(fracture, None, fracture[None]))
    return summed


def test_folds_that_agree_score_zero_and_folds_that_differ_do_not() -> None:
    rng = np.random.default_rng(0)
    one = rng.random((16, 20)).astype(np.float32)
    assert fold_maps([one] * 5).disagreement() == 0.0
    other = fold_maps([one, 1 - one, one, rng.random((16, 20)).astype(np.float32), one])
    assert other.disagreement() > 0.01
    # Population variance, as numpy has it.
    stack = np.stack([one, 1 - one])
    assert fold_maps(list(stack)).disagreement() == pytest.approx(float(stack.var(axis=0).mean()), rel=1e-5)
    labels = fold_maps([np.full((2, 2), 0.8, np.float32), np.full((2, 2), 0.4, np.float32)]).labels()
    assert labels.tolist() == [[1, 1], [1, 1]], "the mean 0.6 is the label's"


def test_the_classifiers_doubt_peaks_at_one_half() -> None:
    assert [classifier_doubt(p) for p in (0.0, 0.25, 0.5, 1.0)] == [0.0, 0.5, 1.0, 0.0]


def test_the_order_is_deterministic_with_ties_by_name() -> None:
    pictures = [Scored("c", 0.3, 0.5), Scored("a", 0.0, 0.99), Scored("b", 0.3, 0.5), Scored("d", 0.1, 0.6)]
    both = [p.name for p, _ in ranked(pictures, "both", 0)]
    assert both == ["b", "c", "d", "a"] == [p.name for p, _ in ranked(pictures[::-1], "both", 0)]
    assert [p.name for p, _ in ranked(pictures, "folds", 0)][:2] == ["b", "c"]
    assert [p.name for p, _ in ranked(pictures, "classifier", 0)][-1] == "a"
    random_order = [p.name for p, _ in ranked(pictures, "random", 3)]
    assert random_order == [p.name for p, _ in ranked(pictures[::-1], "random", 3)], "seeded, whatever the input order"
    assert sorted(random_order) == ["a", "b", "c", "d"]
