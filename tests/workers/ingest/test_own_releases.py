"""A group's own radiographs: COCO exports as CVAT and Label Studio make them (tests/own_releases.py, from
the mini set), a release with two categories and a groups CSV, each ingested through the real stack and
its masks compared with pycocotools' rasterisation; and what such a release may get wrong, refused by name."""

from __future__ import annotations

import csv
import json
import shutil
import zipfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import Stack, wait_for
from own_releases import cvat_export, label_studio_export, two_category_export
from PIL import Image

from workers.imaging.geometry import working_shape
from workers.ingest.coco import load_coco
from workers.nnunet.nifti import read_case

pytestmark = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
SIZE = 256


def ingest(system: Stack, *args: str) -> dict:
    result = system.dispatch("ingest", *args, "--size", str(SIZE), "--wait", "--json")
    run = json.loads(result.stdout)
    assert result.returncode == 0, run["error"]
    return run


def reference(coco_path: Path, file_name: str, category_ids: list[int]) -> np.ndarray:
    """pycocotools' own masks of the picture's annotations of those categories (unioned), at the working size."""
    coco = load_coco(coco_path, unique_file_names=False)
    entries = [image for image in coco.imgs.values() if image["file_name"] == file_name]
    width, height = entries[0]["width"], entries[0]["height"]
    full = np.zeros((height, width), np.uint8)
    for entry in entries:
        for annotation in coco.loadAnns(coco.getAnnIds(imgIds=[entry["id"]], catIds=category_ids)):
            if annotation["segmentation"]:
                full |= coco.annToMask(annotation)
    shape = working_shape(width, height, SIZE)
    return np.asarray(Image.fromarray(full * 255).resize(shape, Image.Resampling.BILINEAR)) >= 128


def labels_of(dataset: Path) -> dict[str, np.ndarray]:
    return {
        path.name.removesuffix(".nii.gz"): read_case(path)
        for folder in ("labelsTr", "labelsTs")
        for path in sorted((dataset / folder).glob("*.nii.gz"))
    }


def manifest(run: dict) -> dict[str, dict[str, str]]:
    with open(run["artifacts"]["manifest"]) as handle:
        return {row["case_id"]: row for row in csv.DictReader(handle)}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """1 for two empty masks."""
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def test_a_cvat_export_with_rle_masks_is_ingested(system: Stack, mini: Path, tmp_path: Path) -> None:
    export = cvat_export(mini, tmp_path / "cvat")
    run = ingest(system, "--source", str(export), "--dataset-id", "310")
    metrics, dataset = run["metrics"], Path(run["artifacts"]["dataset"])
    assert metrics["labels"] == ["fracture"] and metrics["box_only_pictures"] == 1
    assert metrics["positive_cases"] == 11 and metrics["negative_cases"] == 8, "the box-only picture is no case"
    plan = next(job for job in run["jobs"] if job["kind"] == "plan")
    assert (
        "annotations/instances_default.json" in plan["metrics"]["layout"]
        and "images/default" in plan["metrics"]["layout"]
    )
    assert any("Fractured/IMG" in warning and "boxes but no mask" in warning for warning in metrics["warnings"])
    coco_path = export / "annotations" / "instances_default.json"
    rows, labels = manifest(run), labels_of(dataset)
    assert len(rows) == 20 and len(labels) == 19
    for case, label in labels.items():
        row = rows[case]
        expected = reference(coco_path, row["source_file"].split("images/default/", 1)[1], [1])
        assert label.shape == expected.shape and label.any() == expected.any() == case.startswith("Fractured__"), case
        assert not expected.any() or iou(label > 0, expected) >= 0.95, case
    json_labels = json.loads((dataset / "dataset.json").read_text())["labels"]
    assert json_labels == {"background": 0, "fracture": 1}
    with open(run["artifacts"]["classification_labels"]) as handle:
        classifier_rows = list(csv.DictReader(handle))
    assert len(classifier_rows) == 20 and sum(int(row["label"]) for row in classifier_rows) == 12, "box-only kept"

    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(dataset), num_processes=2)


def test_a_label_studio_zip_with_two_annotators_is_ingested(system: Stack, mini: Path, tmp_path: Path) -> None:
    export = label_studio_export(mini, tmp_path / "project-1-at-2026-12-06")
    archive = tmp_path / "project-1.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted(export.rglob("*")):
            bundle.write(path, path.relative_to(export.parent))
    shutil.rmtree(export / "images")  # only the zip is read
    coco_path = export / "result.json"
    run = ingest(system, "--source", str(archive), "--dataset-id", "311")
    metrics, dataset = run["metrics"], Path(run["artifacts"]["dataset"])
    assert metrics["labels"] == ["Fracture"] and metrics["images"] == 16 and metrics["box_only_pictures"] == 1
    warnings = " ".join(metrics["warnings"])
    assert "several annotators" in warnings and "without any mask are not labels: Plate" in warnings
    content = json.loads(coco_path.read_text())
    twice = [image["file_name"] for image in content["images"]]
    twice = next(name for name in twice if twice.count(name) == 2)
    labels = labels_of(dataset)
    case = "images__" + Path(twice).stem
    union = reference(coco_path, twice, [0])
    assert iou(labels[case] > 0, union) >= 0.9, "both annotators' masks, unioned"
    first_only = json.loads(coco_path.read_text())
    first_only["annotations"] = [a for a in first_only["annotations"] if a["image_id"] != max(
        image["id"] for image in first_only["images"] if image["file_name"] == twice)]  # fmt: skip
    (tmp_path / "first.json").write_text(json.dumps(first_only))
    assert (labels[case] > 0).sum() > reference(tmp_path / "first.json", twice, [0]).sum(), "more than one annotator"
    assert not (system.data_root / "staging" / f"run-{run['id']}").exists(), "the unpacked zip is removed"
    assert manifest(run)[case]["source_file"] == f"{archive}!/{export.name}/{twice}", "named inside the zip"
    said = "project-1.zip, unpacked: COCO release: result.json, pictures under the release's folder; labels Fracture=1"
    assert metrics["layout"] == said


def test_two_categories_and_patient_groups(system: Stack, mini: Path, tmp_path: Path) -> None:
    export, groups = two_category_export(mini, tmp_path / "two", fractured=12, negatives=9)
    run = ingest(system, "--source", str(export), "--groups", str(groups), "--dataset-id", "312")
    metrics, dataset = run["metrics"], Path(run["artifacts"]["dataset"])
    assert metrics["labels"] == ["fracture", "plate"], "in id order (3, 7); 'unused' (5) has no mask"
    assert json.loads((dataset / "dataset.json").read_text())["labels"] == {"background": 0, "fracture": 1, "plate": 2}
    rows = manifest(run)
    labels = labels_of(dataset)
    coco_path = export / "annotations.json"
    for case, label in labels.items():
        fracture, plate = reference(coco_path, f"{case}.jpg", [3]), reference(coco_path, f"{case}.jpg", [7])
        assert set(np.unique(label)) <= {0, 1, 2}
        assert iou(label == 2, plate) >= 0.9, "plate is the later category: drawn over the fracture"
        assert iou(label == 1, fracture & ~plate) >= 0.8, case
    contested = sum(int(row["contested_pixels"] or 0) for row in rows.values())
    assert contested == metrics["contested_pixels"] > 0

    patients: dict[str, set[str]] = defaultdict(set)
    for line in groups.read_text().splitlines()[1:]:
        name, patient = line.split(",")
        patients[patient].add(rows[Path(name).stem]["split"])
    # Every picture here is a case (the negatives are fewer than the fractured ones): none may have no side.
    assert all(len(sides) == 1 and sides <= {"train", "test"} for sides in patients.values()), patients
    assert set().union(*patients.values()) == {"train", "test"}, "patients on both sides"
    assert metrics["given_groups"] == 7 and metrics["train_groups"] >= 1 and metrics["test_groups"] >= 1
    assert metrics["train_groups"] + metrics["test_groups"] <= 7
    shown = system.dispatch("show", run["ref"]).stdout
    assert "train_groups" in shown and "test_groups" in shown

    chosen = ingest(system, "--source", str(export), "--categories", "plate,fracture", "--dataset-id", "313")
    labels = json.loads((Path(chosen["artifacts"]["dataset"]) / "dataset.json").read_text())["labels"]
    assert labels == {"background": 0, "plate": 1, "fracture": 2}, "--categories chooses and orders"


def _edit(path: Path, change: Callable[[dict], None]) -> None:
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content))


SLIPPED = "slipped-out.txt"  # the name a zip-slip member would leave behind outside the staging folder


def _slip(root: Path) -> Path:
    """An export zip whose member climbs out of the staging folder (staging/run-N/release/): unpacked naively
    it would land in the data root's staging folder, the data root, and its parent."""
    archive = root.parent / "slip.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for depth in (2, 3, 4):
            bundle.writestr("../" * depth + SLIPPED, "x")
    return archive


BAD_EXPORTS: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "RLE of another size": (
        lambda root: (
            _edit(
                root / "annotations.json",
                lambda c: c["annotations"][0].update(segmentation={"size": [4, 5], "counts": [20]}),
            )
            or []
        ),  # fmt: skip
        "has an RLE mask of 5x4 pixels, but its image is",
    ),
    "file_name leaving the release": (
        lambda root: _edit(root / "annotations.json", lambda c: c["images"][0].update(file_name="../x.jpg")) or [],
        "has file_name '../x.jpg', which leaves the release",
    ),
    "file_name missing on disk": (
        lambda root: _edit(root / "annotations.json", lambda c: c["images"][0].update(file_name="gone.jpg")) or [],
        "names gone.jpg, but no such file exists",
    ),
    "one file_name, two sizes": (
        lambda root: (
            _edit(
                root / "annotations.json",
                lambda c: c["images"][1].update(file_name=c["images"][0]["file_name"], width=7),
            )
            or []
        ),  # fmt: skip
        "both name",
    ),
    "undefined category": (
        lambda root: _edit(root / "annotations.json", lambda c: c["annotations"][0].update(category_id=42)) or [],
        "names category id 42, which the file's 'categories' list does not define",
    ),
    "boxes only": (
        lambda root: (
            _edit(root / "annotations.json", lambda c: [a.update(segmentation=[]) for a in c["annotations"]]) or []
        ),
        "has no mask annotation (polygon or RLE), only boxes",
    ),
    "unknown category chosen": (lambda root: ["--categories", "fracture,screw"], "--categories names 'screw'"),
    "zip leaving its folder": (lambda root: ["--source", str(_slip(root))], "a path that leaves the archive"),
}


@pytest.mark.parametrize("case", sorted(BAD_EXPORTS))
def test_a_bad_export_fails_cleanly(case: str, system: Stack, mini: Path, tmp_path: Path) -> None:
    damage, message = BAD_EXPORTS[case]
    export, _groups = two_category_export(mini, tmp_path / "export", fractured=4, negatives=2)
    extra = damage(export)
    dataset_id = 320 + sorted(BAD_EXPORTS).index(case)
    source = [] if "--source" in extra else ["--source", str(export)]
    result = system.dispatch("ingest", *source, *extra, "--dataset-id", str(dataset_id), "--wait")
    assert result.returncode == 1 and message in result.stdout, result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    run = json.loads(system.dispatch("show", result.stdout.split()[1], "--json").stdout)
    assert run["state"] == "failed" and message in run["error"]
    assert not list((system.data_root / "nnUNet_raw").glob(f"Dataset{dataset_id}_*"))
    wait_for(
        lambda: not (system.data_root / "staging" / f"run-{run['id']}").exists(),
        timeout=30,
        what="the staging folder to be removed",
    )
    # A zip-slip member's three landing places (staging/, the data root, its parent): none holds it.
    landings = [system.data_root / "staging", system.data_root, system.data_root.parent]
    assert not [folder for folder in landings if (folder / SLIPPED).exists()], "nothing written outside"
