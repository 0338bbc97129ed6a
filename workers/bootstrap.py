"""95% percentile bootstrap confidence intervals of the test figures, seeded so that a report is repeatable.

Cases are drawn with replacement RESAMPLES times and the statistic recomputed on each draw; the interval is
the 2.5th to 97.5th percentile of those values, as {"low", "high"} (MLflow charts a nested dict's numbers).
With `strata` (the labels of a classifier's test images)
each stratum is resampled on its own, so that every draw keeps the test split's number of fractured and
non-fractured images and a ranking metric (ROC AUC) is defined on every draw.
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


def interval(
    statistic: Callable[..., float | None],
    arrays: Sequence[np.ndarray],
    strata: Sequence[int] | None = None,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> dict[str, float] | None:
    """{low, high} of `statistic(*arrays)` over bootstrap draws of the cases (the arrays' first axis); None
    with fewer than two cases or where the statistic is undefined on most draws."""
    arrays = [np.asarray(array) for array in arrays]
    n = len(arrays[0])
    if n < 2:
        return None
    values = []
    for index in draws(n, strata, resamples, seed):
        value = statistic(*(array[index] for array in arrays))
        if value is not None and np.isfinite(value):
            values.append(value)
    return _bounds(values) if len(values) >= resamples / 2 else None


def mean_interval(values: Sequence[float]) -> dict[str, float] | None:
    """The interval of a mean, vectorised (per-case Dice)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return None
    return _bounds(values[draws(len(values))].mean(axis=1))
