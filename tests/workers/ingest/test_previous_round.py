"""`dispatch ingest --previous`: a unit with a case of the last round keeps that case's side (test wins), only
new units are split; a pre-annotated picture's correction is its IoU with the prediction."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from shared.contract import PreviousRound
from workers.ingest.previous_round import corrections, earlier_sides, summary
from workers.ingest.split import TEST, TRAIN, kept_split


def test_earlier_cases_keep_their_side_and_only_new_units_are_split() -> None:
    members = {f"u{n}": [f"c{n}a", f"c{n}b"] for n in range(10)}
    strata = {unit: "1/hand" for unit in members}
    earlier = {"c0a": TEST, "c1a": TRAIN, "c2a": TRAIN, "c2b": TEST}
    split = kept_split(members, strata, 0.2, 0, earlier)
    assert split["c0a"] == split["c0b"] == TEST, "the unit goes with its earlier test case"
    assert split["c1a"] == split["c1b"] == TRAIN
    assert split["c2a"] == split["c2b"] == TEST, "a unit with any case once in test stays in test"
    new = [case for unit in list(members)[3:] for case in members[unit]]
    assert sum(split[case] == TEST for case in new) == 4, "ceil(7 new units x 0.2) = 2 units to test"
    assert kept_split({"u0": ["a"], "u1": ["b"]}, {"u0": "x", "u1": "x"}, 0.2, 0, {"a": TEST}) == {
        "a": TEST,
        "b": TRAIN,
    }


class Item:
    """What corrections() reads of a plan item."""

    def __init__(self, case_id: str, file_name: str, segments: list, size: tuple[int, int]) -> None:
        self.case_id, self.file_name, self.segments, self.coco_size = case_id, file_name, segments, size


def test_a_correction_is_its_iou_with_the_prediction(tmp_path: Path) -> None:
    predictions = tmp_path / "predicted"
    predictions.mkdir()
    mask = np.zeros((40, 50), np.uint8)
    mask[10:20, 10:30] = 255
    Image.fromarray(mask).save(predictions / "a_mask.png")
    Image.fromarray(np.zeros_like(mask)).save(predictions / "b_mask.png")
    with (predictions / "predictions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "mask"])
        writer.writerows([["a", "a_mask.png"], ["b", "b_mask.png"]])
    same = [{"label": 1, "polygons": [[10, 10, 30, 10, 30, 20, 10, 20]]}]
    moved = [{"label": 1, "polygons": [[15, 10, 35, 10, 35, 20, 15, 20]]}]
    items = [
        Item("c1", "images/1a2b3c4d-a.jpg", same, (50, 40)),  # Label Studio's upload prefix
        Item("c2", "a.png", moved, (50, 40)),
        Item("c3", "b.jpg", [], (50, 40)),  # accepted: nothing predicted, nothing drawn
        Item("c4", "new.jpg", same, (50, 40)),  # not pre-annotated
    ]
    found = corrections(PreviousRound(run=7, predictions=str(predictions)), items, {})  # type: ignore[arg-type]
    iou = {c.case_id: c.iou for c in found}
    assert iou == {"c1": 1.0, "c2": 150 / 250, "c3": 1.0}
    assert summary(found, 7) == {
        "previous": "r7", "pre_annotated": 3, "accepted_unchanged": 2, "mean_iou": 0.8667, "median_iou": 1.0,
    }  # fmt: skip


def test_an_earlier_picture_is_found_by_its_hashes_else_by_its_stem(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "source_file", "split", "exact_hash", "perceptual_hash"])
        writer.writerow(["a", "/r1/x.jpg", TEST, "e1", "00" * 32])
        writer.writerow(["b", "/r1/y.jpg", TRAIN, "e2", "ff" * 32])
        writer.writerow(["c", "/r1/z.jpg", "", "e3", "0f" * 32])  # no case: no side
    items = [Item("n1", "copy.jpg", [], (1, 1)), Item("n2", "renamed.png", [], (1, 1)),
             Item("n3", "../pre/pictures/y.png", [], (1, 1)), Item("n4", "z.jpg", [], (1, 1))]  # fmt: skip
    hashes = {
        "copy.jpg": ("e1", "00" * 32),  # the same bytes
        "renamed.png": ("other", "ff" * 31 + "fe"),  # one bit from b's perceptual hash
        "../pre/pictures/y.png": ("other", "55" * 32),  # re-encoded past the threshold: its stem
        "z.jpg": ("e3", "0f" * 32),
    }
    assert earlier_sides(manifest, items, hashes) == {"n1": TEST, "n2": TRAIN, "n3": TRAIN}  # type: ignore[arg-type]
