"""Duplicates, conflicts and negatives through the ingest's own steps (plan, convert, assemble in-process),
on a synthetic release with planted copies: each group on one side of every split (nnU-Net's test split,
the five folds, the classifier's three parts), a conflicting pair named and handled by --conflicts,
non-fractured cases in imagesTr with empty masks, every picture's aspect ratio kept."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from shared.contract import IngestRequest
from shared.errors import InputError
from shared.layout import DataRoot
from workers.classifier.data import load_set, stratified_split
from workers.imaging.geometry import working_shape
from workers.ingest.steps import assemble, convert_chunk, plan
from workers.nnunet.nifti import read_case
from workers.nnunet.preprocess import write_splits

SIZE = 512  # above the synthetic pictures' sides: no draft-mode reduction, so a lossless copy decodes the same
EXIF_ORIENTATION, ROTATE_90 = 0x0112, 6


def ingest(source: Path, root: Path, **options: object) -> tuple[dict, dict]:
    request = IngestRequest(source=str(source), size=SIZE, overwrite=True, **options)
    layout, staging = DataRoot(root), root / "staging" / "run-1"
    planned = plan(request, source, staging, layout.nnunet_raw, chunk_size=8)
    for start, _stop in planned["chunks"]:
        convert_chunk(request, staging, start, lambda *_: None)
    return assemble(request, staging, layout)


@pytest.fixture
def planted(release: Callable[..., Path]) -> tuple[Path, dict[str, tuple[str, str]]]:
    """A release with an identical copy, an EXIF-rotated lossless copy and a fractured picture that is also
    in Non_fractured/. Returns it and each pair (original, copy)."""
    root = release(fractured=10, non_fractured=10)
    fractured = sorted((root / "images" / "Fractured").iterdir())
    negatives = sorted((root / "images" / "Non_fractured").iterdir())
    gray = next(path for path in negatives[3:] if Image.open(path).mode == "L")
    shutil.copyfile(negatives[2], root / "images" / "Non_fractured" / "IMG0000901.jpg")
    upright = ImageOps.exif_transpose(Image.open(gray)).convert("L")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what EXIF tag 6 turns back upright
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = ROTATE_90
    stored.save(root / "images" / "Non_fractured" / "IMG0000902.png", exif=exif)
    shutil.copyfile(fractured[3], root / "images" / "Non_fractured" / "IMG0000903.jpg")
    pairs = {
        "identical": (negatives[2].stem, "IMG0000901"),
        "rotated": (gray.stem, "IMG0000902"),
        "conflict": (fractured[3].stem, "IMG0000903"),
    }
    return root, pairs


def side_of(dataset: Path) -> dict[str, str]:
    sides = {}
    for folder, side in (("labelsTr", "train"), ("labelsTs", "test")):
        sides |= {path.name.removesuffix(".nii.gz"): side for path in (dataset / folder).glob("*.nii.gz")}
    return sides


def test_duplicates_stay_together_and_a_conflict_is_dropped(planted: tuple, tmp_path: Path) -> None:
    source, pairs = planted
    metrics, artifacts = ingest(source, tmp_path / "root")
    dataset = Path(artifacts["dataset"])
    groups = json.loads(Path(artifacts["groups"]).read_text())
    found = {tuple(members) for members in groups["groups"].values()}
    for name in ("identical", "rotated", "conflict"):
        assert tuple(sorted(pairs[name])) in found, f"the {name} copy is grouped with its original"
    assert metrics["duplicate_groups"] == 3 and metrics["conflicting_groups"] == 1
    assert metrics["identical_groups"] == 3, "the EXIF-rotated lossless copy decodes to the same pixels"
    conflict = pairs["conflict"]
    warning = next(text for text in metrics["warnings"] if "conflicting duplicates" in text)
    assert all(case in warning for case in conflict) and "dropped" in warning
    assert set(groups["excluded"]) == set(conflict)

    sides = side_of(dataset)
    assert not set(conflict) & set(sides), "a conflicting pair is in neither side"
    for name in ("identical", "rotated"):
        original, copy = pairs[name]
        assert original in sides and sides[original] == sides[copy], f"the {name} pair is on one side"
    folder = {"train": "labelsTr", "test": "labelsTs"}
    negatives = [case for case in sides if not read_case(dataset / folder[sides[case]] / f"{case}.nii.gz").any()]
    assert len(negatives) == metrics["negative_cases"] == metrics["positive_cases"], "--negatives 1"
    assert any(sides[case] == "train" for case in negatives) and any(sides[c] == "test" for c in negatives)
    assert all((dataset / "imagesTr" / f"{case}_0000.nii.gz").exists() for case in negatives if sides[case] == "train")

    preprocessed = tmp_path / "preprocessed"
    preprocessed.mkdir()
    folds = json.loads(write_splits(dataset, preprocessed, seed=0).read_text())
    fold_of = {case: k for k, fold in enumerate(folds) for case in fold["val"]}
    assert sorted(fold_of) == sorted(case for case, side in sides.items() if side == "train")
    trained_pairs = [pairs[name] for name in ("identical", "rotated") if sides[pairs[name][0]] == "train"]
    assert trained_pairs, "a duplicate pair on the train side, whose folds the check below reads"
    for original, copy in trained_pairs:
        assert fold_of[original] == fold_of[copy], f"the pair {original}, {copy} is validated by one fold"

    cache = load_set(Path(artifacts["classification_images"]).parent)
    parts = stratified_split(cache.labels, cache.regions, 0.2, 0.2, 0, cache.groups, cache.excluded)
    part_of = {Path(cache.image_ids[i]).stem: part for part, indices in parts.items() for i in indices}
    assert not set(conflict) & set(part_of), "the classifier never sees a conflicting pair"
    for name in ("identical", "rotated"):
        original, copy = pairs[name]
        assert part_of[original] == part_of[copy], f"the classifier's split keeps the {name} pair together"
    with open(artifacts["manifest"]) as handle:
        rows = {row["case_id"]: row for row in csv.DictReader(handle)}
    assert rows[conflict[1]]["excluded"] and rows[conflict[1]]["group"] == rows[conflict[0]]["group"]


def test_the_conflict_policy_keeps_the_fractured_copy_or_fails(planted: tuple, tmp_path: Path) -> None:
    source, pairs = planted
    original, copy = pairs["conflict"]
    metrics, artifacts = ingest(source, tmp_path / "keep", conflicts="keep-fractured")
    sides = side_of(Path(artifacts["dataset"]))
    assert original in sides and copy not in sides
    with pytest.raises(InputError, match=f"{original} \\(Fractured\\) = {copy} \\(Non_fractured\\).*--conflicts"):
        ingest(source, tmp_path / "fail", conflicts="fail")
    assert not (tmp_path / "fail" / "nnUNet_raw").exists(), "nothing half-written"


def test_every_case_keeps_its_aspect_ratio_and_negatives_follow_the_option(
    release: Callable[..., Path], tmp_path: Path
) -> None:
    source = release(fractured=8, non_fractured=6)
    metrics, artifacts = ingest(source, tmp_path / "none", negatives="none")
    dataset = Path(artifacts["dataset"])
    assert metrics["negative_cases"] == 0 and all(read_case(p).any() for p in (dataset / "labelsTr").glob("*"))
    with open(artifacts["manifest"]) as handle:
        for row in csv.DictReader(handle):
            expected = working_shape(int(row["width"]), int(row["height"]), SIZE)
            assert (int(row["working_width"]), int(row["working_height"])) == expected
            if row["split"]:
                folder = "imagesTr" if row["split"] == "train" else "imagesTs"
                rows, columns = read_case(dataset / folder / f"{row['case_id']}_0000.nii.gz").shape
                assert (columns, rows) == expected
                assert abs(columns / rows - int(row["width"]) / int(row["height"])) <= 1 / min(rows, columns)
    everything, _ = ingest(source, tmp_path / "all", negatives="all")
    assert everything["negative_cases"] == 6 and everything["cases"] == 14
    squashed, artifacts = ingest(source, tmp_path / "square", square=64)
    case = next((Path(artifacts["dataset"]) / "imagesTr").glob("*.nii.gz"))
    assert read_case(case).shape == (64, 64) and np.load(artifacts["classification_images"]).shape[1:] == (64, 64)
