"""nnU-Net's residual-encoder presets and fine-tuning through `dispatch`, at a tiny budget: `preprocess
--planner resenc-m` plans with nnU-Net's own nnUNetPlannerResEncM and `train` (no --plans) trains a fold with
the plans it made; then a second dataset takes those plans (`preprocess --plans-from`, nnU-Net's move) and
its fold starts from the first run's (`train --pretrained`, nnU-Net's -pretrained_weights)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Stack

from workers.ingest.synthetic import make_synthetic_release

pytestmark = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
DATASET, TARGET = 402, 403
RESENC_M = "nnUNetResEncUNetMPlans"


def run_json(system: Stack, *args: str) -> dict:
    result = system.dispatch(*args, "--wait", "--json", timeout=600)
    run = json.loads(result.stdout)
    assert result.returncode == 0, run.get("error") or result.stderr
    return run


def test_a_residual_encoder_preset_plans_and_trains_a_fold(system: Stack, tmp_path: Path) -> None:
    release = make_synthetic_release(tmp_path / "release", fractured=10, non_fractured=8)
    run_json(system, "ingest", "--source", str(release), "--dataset-id", str(DATASET), "--size", "64")
    mismatch = system.dispatch("preprocess", "--dataset-id", str(DATASET), "--planner", "resenc-l", "--plans", "x")
    assert mismatch.returncode == 2 and "'x' is not the plans --planner resenc-l makes (nnUNetResEncUNetLPlans)" in (
        mismatch.stderr
    )
    preprocessed = run_json(system, "preprocess", "--dataset-id", str(DATASET), "--planner", "resenc-m")
    assert preprocessed["params"]["plans"] == RESENC_M and preprocessed["metrics"]["plans"] == RESENC_M
    plans = json.loads(Path(preprocessed["artifacts"]["plans"]).read_text())
    assert Path(preprocessed["artifacts"]["plans"]).name == f"{RESENC_M}.json"
    assert plans["configurations"]["2d"]["architecture"]["network_class_name"].endswith("ResidualEncoderUNet")

    trained = run_json(system, "train", "--dataset-id", str(DATASET), "--folds", "0", "--epochs", "1",
                       "--iterations", "2", "--save-every", "1")  # fmt: skip
    assert trained["params"]["plans"] == RESENC_M, "the folds train with the plans the planner made"
    fold = next(job for job in trained["jobs"] if job["kind"] == "fold")
    assert fold["state"] == "succeeded" and f"__{RESENC_M}__2d" in fold["artifacts"]["checkpoint_final"]

    release = make_synthetic_release(tmp_path / "second", fractured=10, non_fractured=8, seed=1)
    run_json(system, "ingest", "--source", str(release), "--dataset-id", str(TARGET), "--size", "64")
    moved = run_json(system, "preprocess", "--dataset-id", str(TARGET), "--plans-from", trained["ref"])
    assert moved["params"]["plans"] == f"{RESENC_M}_from{DATASET}"
    assert json.loads(Path(moved["artifacts"]["plans"]).read_text())["dataset_name"].startswith(f"Dataset{TARGET}_")
    checkpoint = fold["artifacts"]["checkpoint_final"]
    bad = system.dispatch("train", "--dataset-id", str(TARGET), "--pretrained", f"{trained['ref']}:3")
    assert bad.returncode == 2 and f"run {trained['ref']} has no trained fold 3 (its folds: [0])" in bad.stderr
    tuned = run_json(system, "train", "--dataset-id", str(TARGET), "--folds", "0", "--epochs", "1",
                     "--iterations", "2", "--pretrained", trained["ref"])  # fmt: skip
    assert tuned["params"]["pretrained"] == checkpoint and tuned["params"]["plans"] == f"{RESENC_M}_from{DATASET}"
    started = next(job for job in tuned["jobs"] if job["kind"] == "fold")
    log = Path(started["artifacts"]["log"]).read_text()
    assert f"Loading pretrained weights from file  {checkpoint}" in log, "nnU-Net loaded the first run's fold"
