"""`dispatch evaluate`: dataset 400's folds and classifier (trained at a token budget) scored on a second
release from "another hospital": a COCO export whose category has another name, with DICOM pictures of
made-up patients among its PNGs and three pictures of the training release among them. The shared pictures
are named and left out, the threshold is the internal one, the reported figures agree with scikit-learn and
with nnU-Net's own evaluation computed from the per-case table, and no patient datum is anywhere outside the
data root's private folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import TRAINING_DATASET, Stack, run_json, tiny_model
from dicom_files import PATIENT
from own_releases import external_cohort
from PIL import Image
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from tracking_reads import artifact_paths, mlflow_run_of

from workers.ingest.synthetic import make_synthetic_release

# In make test-long (CI runs it): alone, it trains five folds first; after the classifier's tests it takes theirs.
pytestmark = [
    pytest.mark.parametrize("stack", ["sqlite"], indirect=True),
    pytest.mark.timeout(1500),
    pytest.mark.long,
]


def test_an_external_cohort_is_scored_honestly(system: Stack, tmp_path: Path) -> None:
    trained, classified = tiny_model(system, tmp_path / "train-release")
    training = make_synthetic_release(tmp_path / "training", fractured=20, non_fractured=16)  # dataset 400's release
    cohort = external_cohort(training, make_synthetic_release(tmp_path / "other", 10, 8, seed=7), tmp_path / "cohort")
    model = ("--segmentation", trained["ref"], "--classifier", classified["ref"])

    unknown = system.dispatch("evaluate", "--source", str(cohort), *model, "--wait")
    assert unknown.returncode == 1, unknown.stdout
    assert "the cohort's category 'Break' is not one the model knows (fracture)" in unknown.stdout
    results = tmp_path / "results.md"
    run = run_json(system, "evaluate", "--source", str(cohort), *model, "--categories", "Break=fracture",
                   "--strata", str(cohort / "strata.csv"), "--by", "site", "--by", "category",
                   "--results", str(results))  # fmt: skip

    metrics, artifacts = run["metrics"], run["artifacts"]
    assert sorted(metrics["left_out"]["names"]) == ["images__seen-0", "images__seen-1", "images__seen-2"]
    with open(artifacts["cases"]) as handle:
        cases = list(csv.DictReader(handle))
    assert len(cases) == 14 and not any(case["name"].startswith("images__seen") for case in cases)
    assert sum(case["name"].startswith("dcm-") for case in cases) == 4, "DICOM pictures under pseudonyms"

    # The classifier: at the internal threshold, figures as scikit-learn computes them from the table.
    classifier = metrics["classifier"]
    internal = classified["metrics"]["classifier image"]["test"]
    assert classifier["threshold"] == internal["threshold"]
    labels = np.array([int(case["fractured"]) for case in cases])
    scores = np.array([float(case["fracture_probability"]) for case in cases])
    assert labels.sum() == 8
    assert classifier["roc_auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-5)
    assert classifier["pr_auc"] == pytest.approx(average_precision_score(labels, scores), abs=1e-5)
    assert classifier["brier"] == pytest.approx(brier_score_loss(labels, scores), abs=1e-5)
    predicted = scores >= classifier["threshold"]
    assert classifier["sensitivity"] == pytest.approx(predicted[labels == 1].mean())
    for key in ("roc_auc", "brier", "sensitivity"):
        bounds = classifier["intervals"][key]
        assert bounds is not None and bounds["low"] <= classifier[key] <= bounds["high"], key

    # The segmentation: nnU-Net's own per-case Dice (its summary.json) gives the reported mean.
    summary = json.loads(Path(artifacts["nnunet_summary"]).read_text())
    nnunet_dice = {Path(case["reference_file"]).name.removesuffix(".nii.gz"): case["metrics"]["1"]["Dice"]
                   for case in summary["metric_per_case"]}  # fmt: skip
    fractured = [case for case in cases if case["segmentation_case"] == "1" and case["fractured"] == "1"]
    assert fractured and all(float(case["dice"]) == pytest.approx(nnunet_dice[case["name"]]) for case in fractured)
    segmentation = metrics["segmentation"]
    assert segmentation["dice_fractured"] == pytest.approx(np.mean([nnunet_dice[case["name"]] for case in fractured]))
    negatives = [case for case in cases if case["fractured"] == "0"]
    alarms = np.mean([int(case["predicted_pixels"]) > 0 for case in negatives])
    assert segmentation["false_positive_share"] == pytest.approx(alarms)

    assert set(metrics["strata"]["site"]) == {"site-0", "site-1"}
    assert sum(stratum["pictures"] for stratum in metrics["strata"]["site"].values()) == 14
    assert metrics["strata"]["category"]["fracture"]["pictures"] == 14, "fractured pictures and every negative"
    assert "| figure [95% CI] | internal test split | external cohort |" in results.read_text()
    shown = system.dispatch("show", run["ref"]).stdout
    assert "external cohort" in shown and "calibration slope" in shown
    pictures = artifact_paths(system, mlflow_run_of(system, run).info.run_id)
    assert {"evaluation/reliability.png", "evaluation/roc.png", "evaluation/cases.csv"} <= set(pictures)
    with Image.open(artifacts["reliability_png"]) as diagram:
        assert diagram.size[0] > 300

    # No patient datum of the DICOM pictures outside the data root's private folder, nor in dispatch's output.
    planted = [pydicom.dcmread(path, stop_before_pixels=True) for path in sorted(cohort.glob("images/*.dcm"))]
    identifying = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
    secrets = [*PATIENT.values(), *(str(header[key].value) for header in planted for key in identifying)]
    private = system.data_root / "private"
    written = [path for path in system.data_root.rglob("*") if path.is_file() and private not in path.parents]
    said = shown + system.dispatch("show", run["ref"], "--json").stdout + results.read_text()
    for value in secrets:
        assert value not in said, f"{value} in what dispatch says"
        leaks = [path for path in written if value.encode() in path.read_bytes()]
        assert not leaks, f"{value} in {leaks[:3]}"
    assert run["params"]["dataset_id"] == TRAINING_DATASET
