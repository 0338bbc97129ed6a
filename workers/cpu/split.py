"""Train/test splits of the segmentation cases: seeded and stratified, or the release's own."""

from __future__ import annotations

import math
import random
from collections import defaultdict

from shared.errors import InputError

TRAIN, TEST = "train", "test"


def stratified_split(strata: dict[str, str], test_fraction: float, seed: int) -> dict[str, str]:
    """Assign each case (case id -> stratum) to train or test.

    ceil(N * test_fraction) cases go to test (717 cases at 0.2 give 573/144, as the release is usually
    cut), shared out over the strata by largest remainder so each keeps its proportion.
    """
    if not 0 < test_fraction < 1:
        raise InputError(f"--test-fraction {test_fraction} must lie strictly between 0 and 1")
    cases = sorted(strata)
    if len(cases) < 2:
        raise InputError(f"{len(cases)} fractured case(s) cannot be split into train and test; need at least 2")
    n_test = min(len(cases) - 1, max(1, math.ceil(len(cases) * test_fraction - 1e-9)))
    groups: dict[str, list[str]] = defaultdict(list)
    for case in cases:
        groups[strata[case]].append(case)
    quotas = {name: len(members) * n_test / len(cases) for name, members in groups.items()}
    taken = {name: math.floor(quota) for name, quota in quotas.items()}
    by_remainder = sorted(groups, key=lambda name: (-(quotas[name] - taken[name]), name))
    for name in by_remainder[: n_test - sum(taken.values())]:
        taken[name] += 1
    rng = random.Random(seed)
    split = {}
    for name in sorted(groups):
        members = groups[name][:]
        rng.shuffle(members)
        for index, case in enumerate(members):
            split[case] = TEST if index < taken[name] else TRAIN
    return split


def official_split(cases: list[str], release_split: dict[str, str], warnings: list[str]) -> dict[str, str]:
    """The release's Utilities/Fracture Split: train and valid train nnU-Net (it cross-validates), test is held out."""
    if not release_split:
        raise InputError("--split official needs 'Utilities/Fracture Split/{train,valid,test}.csv' in the release")
    missing = [case for case in cases if case not in release_split]
    if missing:
        warnings.append(f"{len(missing)} cases are in no official split file and go to train (first: {missing[0]})")
    return {case: TEST if release_split.get(case) == "test" else TRAIN for case in cases}
