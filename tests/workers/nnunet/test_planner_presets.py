"""nnU-Net's residual-encoder presets and fine-tuning through `dispatch`, at a tiny budget: `preprocess
--planner resenc-m` plans with nnU-Net's own nnUNetPlannerResEncM and `train` (no --plans) trains a fold with
the plans it made; then a second dataset takes those plans (`preprocess --plans-from`, nnU-Net's move) and
its fold starts from the first run's (`train --pretrained`, nnU-Net's -pretrained_weights)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import STALL_S, Stack, wait_for

from workers.ingest.synthetic import make_synthetic_release

# Two minutes of planning and training: `make test-long`, which CI runs after `make test`.
pytestmark = [pytest.mark.parametrize("stack", ["sqlite"], indirect=True), pytest.mark.long]
DATASET, TARGET = 402, 403
RESENC_M = "nnUNetResEncUNetMPlans"


def run_json(system: Stack, *args: str) -> dict:
    result = system.dispatch(*args, "--wait", "--json", timeout=600)
    run = json.loads(result.stdout)
    assert result.returncode == 0, run.get("error") or result.stderr
    return run


def fold_only(system: Stack, *args: str) -> tuple[dict, dict]:
    """`dispatch train ARGS --folds 0`: the run once its fold succeeded (its evaluation cancelled: not what
    is shown here), and that fold's job."""
    run = json.loads(system.dispatch("train", *args, "--folds", "0", "--json").stdout)

    def fold() -> dict:
        shown = json.loads(system.dispatch("show", run["ref"], "--json").stdout)
        return next(job for job in shown["jobs"] if job["kind"] == "fold")

    done = wait_for(lambda: (job := fold())["state"] in ("succeeded", "failed") and job, STALL_S, "the fold",
                    progress=system.work)  # fmt: skip
    assert done["state"] == "succeeded", done["error"]
    system.dispatch("cancel", run["ref"])
    return run, done


def test_a_residual_encoder_preset_plans_and_trains_a_fold(system: Stack, tmp_path: Path) -> None:
    release = make_synthetic_release(tmp_path / "release", fractured=10, non_fractured=8)
    run_json(system, "ingest", "--source", str(release), "--dataset-id", str(DATASET), "--size", "64")
    mismatch = system.dispatch("preprocess", "--dataset-id", str(DATASET), "--planner", "resenc-l", "--plans", "x")
    assert mismatch.returncode == 2 and "'x' is not the plans --planner resenc-l makes (nnUNetResEncUNetLPlans)" in (
        mismatch.stderr
    )
    preprocessed = run_json(system, "preprocess", "--dataset-id", str(DATASET), "--planner", "resenc-m")
    (job,) = preprocessed["jobs"]
    assert preprocessed["params"]["plans"] == RESENC_M and job["metrics"]["plans"] == RESENC_M
    plans = json.loads(Path(preprocessed["artifacts"]["plans"]).read_text())
    assert Path(preprocessed["artifacts"]["plans"]).name == f"{RESENC_M}.json"
    assert plans["configurations"]["2d"]["architecture"]["network_class_name"].endswith("ResidualEncoderUNet")

    trained, fold = fold_only(system, "--dataset-id", str(DATASET), "--epochs", "1", "--iterations", "2")
    assert trained["params"]["plans"] == RESENC_M, "the folds train with the plans the planner made"
    assert f"__{RESENC_M}__2d" in fold["artifacts"]["checkpoint_final"]

    release = make_synthetic_release(tmp_path / "second", fractured=10, non_fractured=8, seed=1)
    run_json(system, "ingest", "--source", str(release), "--dataset-id", str(TARGET), "--size", "64")
    moved = run_json(system, "preprocess", "--dataset-id", str(TARGET), "--plans-from", trained["ref"])
    assert moved["params"]["plans"] == f"{RESENC_M}_from{DATASET}"
    assert json.loads(Path(moved["artifacts"]["plans"]).read_text())["dataset_name"].startswith(f"Dataset{TARGET}_")
    checkpoint = fold["artifacts"]["checkpoint_final"]
    bad = system.dispatch("train", "--dataset-id", str(TARGET), "--pretrained", f"{trained['ref']}:3")
    assert bad.returncode == 2 and f"run {trained['ref']} has no trained fold 3 (its folds: [0])" in bad.stderr
    tuned, started = fold_only(system, "--dataset-id", str(TARGET), "--epochs", "1", "--iterations", "2",
                               "--pretrained", trained["ref"])  # fmt: skip
    assert tuned["params"]["pretrained"] == checkpoint and tuned["params"]["plans"] == f"{RESENC_M}_from{DATASET}"
    log = Path(started["artifacts"]["log"]).read_text()
    assert f"Loading pretrained weights from file  {checkpoint}" in log, "nnU-Net loaded the first run's fold"
