"""Train/test splits of the segmentation cases: seeded and stratified, or the release's own; a group of
duplicate pictures always goes whole to one side (workers/ingest/duplicates.py). nnU-Net's folds of the
train side are workers/nnunet/cross_validation.py's."""

from __future__ import annotations

import math
import random
from collections import defaultdict

from shared.errors import InputError

TRAIN, TEST = "train", "test"


def stratified_split(strata: dict[str, str], test_fraction: float, seed: int) -> dict[str, str]:
    """Assign each unit (a case or a group of cases -> its stratum) to train or test.

    ceil(N * test_fraction) units go to test (717 at 0.2 give 573/144, as the release is usually cut),
    shared out over the strata by largest remainder so each keeps its proportion.
    """
    if not 0 < test_fraction < 1:
        raise InputError(f"--test-fraction {test_fraction} must lie strictly between 0 and 1")
    units = sorted(strata)
    if len(units) < 2:
        raise InputError(f"{len(units)} case(s) cannot be split into train and test; need at least 2")
    n_test = min(len(units) - 1, max(1, math.ceil(len(units) * test_fraction - 1e-9)))
    groups: dict[str, list[str]] = defaultdict(list)
    for unit in units:
        groups[strata[unit]].append(unit)
    quotas = {name: len(members) * n_test / len(units) for name, members in groups.items()}
    taken = {name: math.floor(quota) for name, quota in quotas.items()}
    by_remainder = sorted(groups, key=lambda name: (-(quotas[name] - taken[name]), name))
    for name in by_remainder[: n_test - sum(taken.values())]:
        taken[name] += 1
    rng = random.Random(seed)
    split = {}
    for name in sorted(groups):
        members = groups[name][:]
        rng.shuffle(members)
        for index, unit in enumerate(members):
            split[unit] = TEST if index < taken[name] else TRAIN
    return split


def grouped_split(
    members: dict[str, list[str]], strata: dict[str, str], test_fraction: float, seed: int
) -> dict[str, str]:
    """Case -> train | test, with each group (name -> its cases) on one side; `strata`: group -> stratum."""
    sides = stratified_split(strata, test_fraction, seed)
    return {case: sides[group] for group, cases in members.items() for case in cases}


def kept_split(
    members: dict[str, list[str]],
    strata: dict[str, str],
    test_fraction: float,
    seed: int,
    earlier: dict[str, str],
) -> dict[str, str]:
    """grouped_split for the units no earlier round split; a unit with a case of an earlier round (case ->
    its side then) stays on that side, in test where any of its cases was."""
    kept: dict[str, str] = {}
    for group, cases in members.items():
        sides = {earlier[case] for case in cases if case in earlier}
        if sides:
            kept[group] = TEST if TEST in sides else TRAIN
    split = {case: kept[group] for group, cases in members.items() if group in kept for case in cases}
    new = {group: cases for group, cases in members.items() if group not in kept}
    if len(new) >= 2:
        split |= grouped_split(new, {group: strata[group] for group in new}, test_fraction, seed)
    else:  # one new unit cannot be split: it trains
        split |= {case: TRAIN for cases in new.values() for case in cases}
    return split


def official_split(members: dict[str, list[str]], release_split: dict[str, str], warnings: list[str]) -> dict[str, str]:
    """The release's Utilities/Fracture Split for the fractured groups: train and valid train nnU-Net (it
    cross-validates), test is held out. A group with a member in test goes to test whole, so that no copy of
    a test picture is trained on."""
    if not release_split:
        raise InputError("--split official needs 'Utilities/Fracture Split/{train,valid,test}.csv' in the release")
    cases = sorted(case for cases in members.values() for case in cases)
    missing = [case for case in cases if case not in release_split]
    if missing:
        warnings.append(f"{len(missing)} cases are in no official split file and go to train (first: {missing[0]})")
    split = {}
    for cases_of_group in members.values():
        side = TEST if any(release_split.get(case) == "test" for case in cases_of_group) else TRAIN
        split.update(dict.fromkeys(cases_of_group, side))
    return split
