"""Which pictures become nnU-Net cases, and on which side: duplicate groups, their conflicts, the
negatives, the split. Decided once every picture is decoded (the assemble job), since duplicates are
found from the pixels.

- every group of identical or near-identical pictures goes whole to one side of every split, and so does every
  group of a --groups file (a patient or study): the split's units are both kinds joined;
- a group whose members carry different labels (one copy in Fractured/, one in Non_fractured/) is a
  conflict, handled by --conflicts: drop (every member leaves both datasets), keep-fractured (only the
  fractured copies stay) or fail (the ingest stops, naming the groups);
- the pictures with masks are nnU-Net's positive cases; --negatives adds negatives (pictures with neither a
  positive label nor any annotation: whole groups, seeded) with empty masks; both kinds are split with the
  same test fraction.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field

from shared.contract import IngestRequest
from shared.errors import InputError
from workers.ingest.duplicates import group_pictures
from workers.ingest.records import PlanItem
from workers.ingest.split import TEST, TRAIN, grouped_split, kept_split, official_split

CONFLICT = "duplicate of a picture with the other label"
NOT_FRACTURED_COPY = "non-fractured copy of a fractured picture (--conflicts keep-fractured)"


@dataclass
class Selection:
    group_of: dict[str, str]  # case id -> its split unit's name (the smallest case id in it), for every picture
    excluded: dict[str, str]  # case id -> why it is in neither dataset
    split: dict[str, str]  # case id -> train | test, for nnU-Net's cases
    warnings: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def members(self, case_ids: list[str]) -> dict[str, list[str]]:
        """group -> its cases among `case_ids`."""
        groups: dict[str, list[str]] = defaultdict(list)
        for case in sorted(case_ids):
            groups[self.group_of[case]].append(case)
        return groups


def select_cases(
    request: IngestRequest,
    items: list[PlanItem],
    hashes: dict[str, tuple[str, str]],
    release_split: dict,
    earlier: dict[str, str] | None = None,
) -> Selection:
    """`items`: the plan's pictures; `hashes`: file name -> (exact, perceptual) from the convert jobs;
    `earlier`: case -> its side in the last round (--previous), which its unit keeps."""
    names = [item.case_id for item in items]
    numbers = group_pictures([hashes[item.file_name][0] for item in items],
                             [hashes[item.file_name][1] for item in items])  # fmt: skip
    duplicate_of = {name: names[number] for name, number in zip(names, numbers, strict=True)}
    by_case = {item.case_id: item for item in items}
    groups = defaultdict(list)
    for name in names:
        groups[duplicate_of[name]].append(name)
    duplicated = {group: cases for group, cases in groups.items() if len(cases) > 1}
    given = {item.case_id: item.group for item in items if item.group is not None}
    group_of = _split_units(names, duplicate_of, given)
    warnings: list[str] = []
    excluded = _resolve_conflicts(request, duplicated, by_case, warnings)
    positives = [i.case_id for i in items if i.segments and i.case_id not in excluded]
    negatives = _negatives(request, len(positives), items, excluded, group_of)
    selection = Selection(group_of, excluded, {}, warnings)
    strata = {}
    for group, cases in selection.members(positives + negatives).items():
        first = by_case[cases[0]]
        strata[group] = f"{int(first.fractured)}/{first.region}"
    if request.split == "official":
        split = official_split(selection.members(positives), release_split, warnings)
        negative_groups = selection.members(negatives)
        if negative_groups:
            negative_strata = {group: strata[group] for group in negative_groups}
            split |= grouped_split(negative_groups, negative_strata, request.test_fraction, request.seed)
    elif earlier is not None:
        members = selection.members(positives + negatives)
        split = kept_split(members, strata, request.test_fraction, request.seed, earlier)
    else:
        split = grouped_split(selection.members(positives + negatives), strata, request.test_fraction, request.seed)
    selection.split = split
    identical = sum(1 for cases in duplicated.values() if len({hashes[by_case[c].file_name][0] for c in cases}) == 1)
    selection.counts = {
        "duplicate_groups": len(duplicated),
        "identical_groups": identical,
        "near_identical_groups": len(duplicated) - identical,
        "duplicate_pictures": sum(len(cases) for cases in duplicated.values()),
        "conflicting_groups": sum(1 for cases in duplicated.values() if _labels(cases, by_case) == {0, 1}),
        "excluded_pictures": len(excluded),
        "positive_cases": len(positives),
        "negative_cases": len(negatives),
        "test_positive": sum(1 for case in positives if split[case] == TEST),
        "test_negative": sum(1 for case in negatives if split[case] == TEST),
        "given_groups": len(set(given.values())),
        "train_groups": len({group_of[case] for case, side in split.items() if side == TRAIN}),
        "test_groups": len({group_of[case] for case, side in split.items() if side == TEST}),
    }
    if earlier is not None:
        selection.counts |= {
            "kept_test": sum(1 for case, side in split.items() if earlier.get(case) == TEST),
            "kept_train": sum(1 for case, side in split.items() if earlier.get(case) == TRAIN),
            "new_cases": sum(1 for case in split if case not in earlier),
        }
    return selection


def _split_units(names: list[str], duplicate_of: dict[str, str], given: dict[str, str]) -> dict[str, str]:
    """case -> its unit: pictures joined by a duplicate group or a given group, directly or through others;
    named by the smallest case id in it."""
    parent = {name: name for name in names}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    first_of: dict[tuple[str, str], str] = {}
    for name in names:
        for key in (("duplicate", duplicate_of[name]), *((("given", given[name]),) if name in given else ())):
            a, b = root(first_of.setdefault(key, name)), root(name)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return {name: root(name) for name in names}


def _labels(cases: list[str], by_case: dict[str, PlanItem]) -> set[int]:
    return {int(by_case[case].fractured) for case in cases}


def _resolve_conflicts(
    request: IngestRequest,
    duplicated: dict[str, list[str]],
    by_case: dict[str, PlanItem],
    warnings: list[str],
) -> dict[str, str]:
    conflicts = {group: cases for group, cases in duplicated.items() if _labels(cases, by_case) == {0, 1}}
    described = [
        " = ".join(f"{case} ({'Fractured' if by_case[case].fractured else 'Non_fractured'})" for case in cases)
        for cases in conflicts.values()
    ]
    if conflicts and request.conflicts == "fail":
        raise InputError(
            f"{len(conflicts)} group(s) of identical pictures carry both labels: {'; '.join(described[:5])}; "
            "remove the wrong copies from the release, or pass --conflicts drop or --conflicts keep-fractured"
        )
    excluded = {}
    for cases, text in zip(conflicts.values(), described, strict=True):
        if request.conflicts == "drop":
            excluded.update(dict.fromkeys(cases, CONFLICT))
        else:
            excluded.update({case: NOT_FRACTURED_COPY for case in cases if not by_case[case].fractured})
        action = "dropped" if request.conflicts == "drop" else "kept the fractured copies"
        warnings.append(f"conflicting duplicates {text}: {action} (--conflicts {request.conflicts})")
    return excluded


def _negatives(
    request: IngestRequest,
    positives: int,
    items: list[PlanItem],
    excluded: dict[str, str],
    group_of: dict[str, str],
) -> list[str]:
    """Whole groups of non-fractured pictures, in a seeded order, until --negatives' count is reached."""
    groups: dict[str, list[str]] = defaultdict(list)
    for item in items:
        if item.case and not item.segments and item.case_id not in excluded:
            groups[group_of[item.case_id]].append(item.case_id)
    wanted = request.negatives_wanted(positives, sum(len(cases) for cases in groups.values()))
    order = sorted(groups)
    random.Random(request.seed).shuffle(order)
    chosen: list[str] = []
    for group in order:
        if len(chosen) >= wanted:
            break
        chosen += groups[group]
    return chosen
