"""nnU-Net's cross-validation folds of the training cases (its splits_final.json), with each group of duplicate
pictures (the ingest's groups.json) in one fold's validation set only."""

from __future__ import annotations

import random
from collections import defaultdict

from shared.errors import InputError


def grouped_folds(
    group_of: dict[str, str], label_of: dict[str, int], seed: int, n_folds: int
) -> list[dict[str, list[str]]]:
    """nnU-Net's splits_final.json (one {train, val} per fold) for the cases of `group_of` (case -> group):
    each group in one fold's val only, each label's groups dealt out so that every fold holds its share."""
    members: dict[str, list[str]] = defaultdict(list)
    for case in sorted(group_of):
        members[group_of[case]].append(case)
    if len(members) < n_folds:
        raise InputError(f"{len(members)} training case group(s) cannot fill {n_folds} folds; ingest more pictures")
    rng = random.Random(seed)
    folds: list[list[str]] = [[] for _ in range(n_folds)]
    per_label: dict[int, list[int]] = defaultdict(lambda: [0] * n_folds)
    for label in sorted({label_of[cases[0]] for cases in members.values()}):
        names = sorted(name for name, cases in members.items() if label_of[cases[0]] == label)
        rng.shuffle(names)
        names.sort(key=lambda name: -len(members[name]))  # stable: the largest groups first, else shuffled
        counts = per_label[label]
        for name in names:
            fold = min(range(n_folds), key=lambda k: (counts[k], len(folds[k]), k))
            folds[fold] += members[name]
            counts[fold] += len(members[name])
    every = sorted(group_of)
    held_out = [set(val) for val in folds]
    return [{"train": [c for c in every if c not in out], "val": sorted(out)} for out in held_out]
