"""Back to the annotators, with the real tools: dataset 400's model pre-annotates a folder for Label Studio
and for CVAT; a real Label Studio takes the labelling config and the tasks, an annotator accepts every
prediction but one, which they move, and Label Studio's COCO export comes back as the next round with
`--previous`: the accepted pictures' IoU 1.0, the moved one's below it, and every picture of the last round
on its side. CVAT's zip, read by Datumaro as CVAT reads it and by pycocotools, holds the predicted masks.
`dispatch rank` orders the folder by the folds' disagreement and the classifier's doubt."""

from __future__ import annotations

import copy
import csv
import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from annotation_tools import datumaro_masks, label_studio
from conftest import TRAINING_DATASET, Stack, run_json, tiny_model
from PIL import Image
from pycocotools.coco import COCO

from workers.imaging.pictures import EXIF_ORIENTATION
from workers.ingest.synthetic import make_synthetic_release

# The first model test of a session (make test-long) trains five tiny folds and a classifier; the others take them.
pytestmark = [
    pytest.mark.parametrize("stack", ["sqlite"], indirect=True),
    pytest.mark.timeout(1500),
    pytest.mark.long,  # make test-long: one tiny model there serves this, the export and the external validation
]
ROUND_TWO = 440  # a dataset id no other test on the shared stack uses (the planner presets take 402)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def manifest(path: Path) -> dict[str, dict[str, str]]:
    """A dataset's manifest rows by the picture's file name."""
    with path.open(newline="") as handle:
        return {Path(row["source_file"]).name: row for row in csv.DictReader(handle)}


def round_two_folder(system: Stack, scratch: Path) -> tuple[Path, dict[str, str]]:
    """Two test and two train pictures of dataset 400 (the same synthetic release, made again) and two it never
    saw, in one folder; returns it and the earlier side of each picture the last round had."""
    earlier = manifest(next((system.data_root / "nnUNet_raw").glob(f"Dataset{TRAINING_DATASET}_*")) / "manifest.csv")
    again = make_synthetic_release(scratch / "again", fractured=20, non_fractured=16)
    folder = scratch / "served" / "round2"
    folder.mkdir(parents=True)
    sides = {}
    for side in ("test", "train"):
        chosen = sorted(name for name, row in earlier.items() if row["split"] == side and row["label"] == "1")[:2]
        for name in chosen:
            shutil.copy(next(again.glob(f"images/*/{name}")), folder / name)
            sides[name] = side
    unseen = make_synthetic_release(scratch / "unseen", fractured=4, non_fractured=2, seed=11)
    for number, name in enumerate(["IMG0000001.jpg", "IMG0000003.jpg"], start=1):  # its negatives are truncated
        shutil.copy(next(unseen.glob(f"images/*/{name}")), folder / f"new-{number}.jpg")
    return folder, sides


def masks_of(out: Path) -> dict[str, np.ndarray]:
    """The predict run's mask per picture name, from predictions.csv."""
    with (out / "predictions.csv").open(newline="") as handle:
        return {row["name"]: np.asarray(Image.open(out / row["mask"])) > 0 for row in csv.DictReader(handle)}


def test_pre_annotations_go_to_label_studio_and_cvat_and_come_back_as_the_next_round(
    system: Stack, tmp_path: Path
) -> None:
    _, classified = tiny_model(system, tmp_path / "train-release")
    folder, sides = round_two_folder(system, tmp_path)
    served = folder.parent

    # CVAT: a COCO 1.0 zip whose masks, as Datumaro and pycocotools read them, are the predicted ones.
    cvat = run_json(system, "predict", str(folder), "--annotations", "cvat", "--out", str(tmp_path / "cvat"))
    predicted = masks_of(tmp_path / "cvat")
    zipped = Path(cvat["artifacts"]["annotations"][0])
    read = datumaro_masks(zipped, tmp_path / "datumaro")
    coco = COCO(str(tmp_path / "datumaro" / "annotations" / "instances_default.json"))
    label = coco.loadCats(coco.getCatIds())[0]["name"]
    for image in coco.loadImgs(coco.getImgIds()):
        name = image["file_name"].split(".")[0]
        drawn = [coco.annToMask(a) > 0 for a in coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))]
        mask = np.logical_or.reduce(drawn) if drawn else np.zeros_like(predicted[name])
        assert iou(mask, predicted[name]) >= 0.95, f"pycocotools: {name}"
        by_datumaro = read.get(f"{name}|{label}", np.zeros_like(predicted[name]))
        assert iou(by_datumaro, predicted[name]) >= 0.95, f"Datumaro: {name}"

    # Label Studio: the tasks and the labelling config, imported into a real one.
    # Its pictures/ as Label Studio is to show them (the EXIF-turned one upright), served as its local files.
    pre = served / "pre"
    ls = run_json(system, "predict", str(folder), "--annotations", "label-studio", "--out", str(pre),
                  "--image-url", "/data/local-files/?d=pre/pictures/")  # fmt: skip
    turned = {path.name for path in folder.iterdir() if Image.open(path).getexif().get(EXIF_ORIENTATION, 1) != 1}
    assert turned, "the synthetic release has pictures with an EXIF turn"
    names = [*sides, "new-1.jpg", "new-2.jpg"]
    expected = sorted(f"{Path(name).stem}.png" if name in turned else name for name in names)
    assert sorted(path.name for path in (pre / "pictures").iterdir()) == expected
    tasks_file, config_file = (Path(path) for path in ls["artifacts"]["annotations"])
    with label_studio(tmp_path / "label-studio-data", served) as server:
        project = server.call(
            "POST", "/api/projects", json={"title": "round 2", "label_config": config_file.read_text()}
        )
        project_id = project.json()["id"]
        imported = server.call("POST", f"/api/projects/{project_id}/import", json=json.loads(tasks_file.read_text()))
        assert imported.json()["prediction_count"] == 6, "every picture, a region or not: the finding is one"
        tasks = server.call("GET", "/api/tasks", params={"project": project_id, "fields": "all"}).json()["tasks"]
        assert {t["predictions"][0]["model_version"] for t in tasks} == {ls["ref"]}
        # An annotator accepts every prediction but one, whose polygon they move (or, where the model drew
        # nothing at all, draw one).
        polygons = [t for t in tasks if any(r["type"] == "polygonlabels" for r in t["predictions"][0]["result"])]
        changed = (polygons or tasks)[0]
        for task in tasks:
            prediction = task["predictions"][0]
            result = copy.deepcopy(prediction["result"])
            if task is changed:
                shapes = [r for r in result if r["type"] == "polygonlabels"]
                moved = max(shapes, key=lambda r: len(r["value"]["points"]), default=None)
                moved = moved or _triangle(label, pre / "pictures" / task["data"]["file_name"])
                moved["value"]["points"] = [[min(x + 6, 100), y] for x, y in moved["value"]["points"]]
                result = [r for r in result if r is not moved] + [moved]
            body = {"result": result, "parent_prediction": prediction["id"]}
            server.call("POST", f"/api/tasks/{task['id']}/annotations", json=body)
        exported = server.call("GET", f"/api/projects/{project_id}/export", params={"exportType": "COCO"}).content
    corrected = tmp_path / "corrected.zip"
    corrected.write_bytes(exported)
    assert "result.json" in zipfile.ZipFile(io.BytesIO(exported)).namelist()

    # The next round: the export (its pictures are Label Studio's local files), with --previous.
    not_a_round = system.dispatch("ingest", "--source", str(corrected), "--previous", classified["ref"])
    assert not_a_round.returncode == 2 and f"{classified['ref']} is a succeeded classify run" in not_a_round.stderr
    official = system.dispatch("ingest", "--source", str(corrected), "--previous", ls["ref"], "--split", "official")
    assert official.returncode == 2 and "--split official takes the release's own" in official.stderr
    refused = system.dispatch("ingest", "--source", str(corrected), "--dataset-id", str(ROUND_TWO), "--size", "64",
                              "--negatives", "all", "--previous", ls["ref"], "--wait")  # fmt: skip
    assert refused.returncode == 1 and "pass --images its document root" in refused.stdout, refused.stdout
    ingested = run_json(system, "ingest", "--source", str(corrected), "--images", str(served), "--dataset-id",
                        str(ROUND_TWO), "--size", "64", "--negatives", "all", "--previous", ls["ref"])  # fmt: skip
    metrics = ingested["metrics"]
    assert (metrics["previous"], metrics["pre_annotated"], metrics["accepted_unchanged"]) == (ls["ref"], 6, 5)
    with Path(ingested["artifacts"]["corrections"]).open(newline="") as handle:
        ious = {Path(row["file_name"]).name: float(row["iou"]) for row in csv.DictReader(handle)}
    changed_name = changed["data"]["file_name"]
    assert ious.pop(changed_name) < 0.999
    assert set(ious.values()) == {1.0}, "an accepted prediction comes back as it went"
    kept = {Path(name).stem: row for name, row in manifest(Path(ingested["artifacts"]["manifest"])).items()}
    # (by stem: the pictures with an EXIF turn went to the tool, and came back, upright as PNG)
    assert {name: kept[Path(name).stem]["split"] for name in sides} == sides, "no picture of the last round moved"
    assert (metrics["kept_test"], metrics["kept_train"]) == (2, 2)

    shown = system.dispatch("show", ingested["ref"])
    assert "pre_annotated" in shown.stdout and "mean_iou" in shown.stdout

    # Which pictures next: the folds, trained on different data, disagree; the top as Label Studio tasks.
    ranked = run_json(system, "rank", str(folder), "--top", "3", "--annotations", "label-studio",
                      "--out", str(tmp_path / "rank"))  # fmt: skip
    with Path(ranked["artifacts"]["rank"]).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["rank"] for row in rows] == ["1", "2", "3", "4", "5", "6"]
    assert max(float(row["fold_disagreement"]) for row in rows) > 0, "five folds of different data disagree"
    assert [row["name"] for row in rows[:3]] == ranked["metrics"]["top"]
    top_tasks = json.loads(Path(ranked["artifacts"]["annotations"][0]).read_text())
    assert [t["data"]["file_name"].split(".")[0] for t in top_tasks] == ranked["metrics"]["top"]
    with Image.open(ranked["artifacts"]["contact_sheet"]) as sheet:
        assert sheet.size == (3 * 256, 256 + 34)
    shutil.copy(ranked["artifacts"]["contact_sheet"], tmp_path / "contact_sheet_seen.png")
    assert "FOLDS DISAGREE" in system.dispatch("show", ranked["ref"]).stdout


def _triangle(label: str, picture: Path) -> dict:
    """A polygon drawn by hand on a picture the model left empty."""
    with Image.open(picture) as opened:
        width, height = opened.size
    return {
        "id": "drawn",
        "type": "polygonlabels",
        "from_name": "label",
        "to_name": "image",
        "original_width": width,
        "original_height": height,
        "value": {"points": [[20, 20], [40, 20], [30, 40]], "closed": True, "polygonlabels": [label]},
    }
