"""95% percentile bootstrap confidence intervals of the test figures, seeded so that a report is repeatable.

Cases are drawn with replacement RESAMPLES times and the statistic recomputed on each draw; the interval is
the 2.5th to 97.5th percentile of those values, as {"low", "high"} (MLflow charts a nested dict's numbers).
With `strata` (the labels of a classifier's test images)
each stratum is resampled on its own, so that every draw keeps the test split's number of fractured and
non-fractured images and a ranking metric (ROC AUC) is defined on every draw. With `groups` (a patient or
study per case) whole groups are drawn instead, as many as there are, each with all its cases: pictures of
one patient are not independent, and a case-level draw would make the interval too narrow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95
SEED = 0


def _bounds(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return {"low": float(low), "high": float(high)}


def draws(n: int, strata: Sequence[int] | None = None, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(resamples, n) indices into n cases, drawn with replacement (within each stratum, if given)."""
    rng = np.random.default_rng(seed)
    if strata is None:
        return rng.integers(0, n, size=(resamples, n))
    strata = np.asarray(strata)
    columns = []
    for value in np.unique(strata):
        members = np.flatnonzero(strata == value)
        columns.append(members[rng.integers(0, len(members), size=(resamples, len(members)))])
    return np.concatenate(columns, axis=1)


def group_draws(groups: Sequence[str], resamples: int = RESAMPLES, seed: int = SEED) -> list[np.ndarray]:
    """`resamples` index arrays into the cases: each draws as many groups as there are, with replacement, and
    takes every case of each (so a draw's size varies)."""
    rng = np.random.default_rng(seed)
    _names, group_of = np.unique(np.asarray(groups), return_inverse=True)
    members = [np.flatnonzero(group_of == g) for g in range(group_of.max() + 1)] if len(group_of) else []
    picks = rng.integers(0, len(members), size=(resamples, len(members)))
    return [np.concatenate([members[g] for g in row]) for row in picks]


def interval(
    statistic: Callable[..., float | None],
    arrays: Sequence[np.ndarray],
    strata: Sequence[int] | None = None,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    groups: Sequence[str] | None = None,
) -> dict[str, float] | None:
    """{low, high} of `statistic(*arrays)` over bootstrap draws of the cases (the arrays' first axis), or of
    their `groups`; None with fewer than two cases or groups, or where the statistic is undefined on most
    draws."""
    arrays = [np.asarray(array) for array in arrays]
    n = len(arrays[0])
    if n < 2 or (groups is not None and len(set(groups)) < 2):
        return None
    chosen = group_draws(groups, resamples, seed) if groups is not None else draws(n, strata, resamples, seed)
    values = []
    for index in chosen:
        value = statistic(*(array[index] for array in arrays))
        if value is not None and np.isfinite(value):
            values.append(value)
    return _bounds(values) if len(values) >= resamples / 2 else None


def mean_interval(values: Sequence[float], groups: Sequence[str] | None = None) -> dict[str, float] | None:
    """The interval of a mean (per-case Dice): vectorised over case draws, or over `groups`' draws."""
    values = np.asarray(values, dtype=float)
    if groups is not None:
        return interval(lambda v: float(v.mean()), (values,), groups=groups)
    if len(values) < 2:
        return None
    return _bounds(values[draws(len(values))].mean(axis=1))
