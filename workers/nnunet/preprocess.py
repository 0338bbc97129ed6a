"""nnU-Net plan + integrity check + preprocessing (or, with --plans-from, another dataset's plans moved here
as nnU-Net has it for fine-tuning), then a fixed, seeded 5-fold split.

The split is written here, before any fold starts, so that parallel folds never race to create
splits_final.json (nnU-Net writes it on first use otherwise). It keeps each group of duplicate pictures
in one fold (the ingest's groups.json) and deals fractured and non-fractured cases out evenly.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

from shared.contract import PreprocessRequest
from shared.defaults import FOLDS, PLANNERS
from shared.layout import GROUPS_FILE
from shared.settings import Settings
from workers.child import ToolRun
from workers.files import replacing
from workers.nnunet.commands import environment, run_tool, tool
from workers.nnunet.cross_validation import grouped_folds


def write_splits(raw: Path, preprocessed: Path, seed: int) -> Path:
    cases = sorted(path.name.removesuffix(".nii.gz") for path in (raw / "labelsTr").glob("*.nii.gz"))
    group_of, label_of = dict(zip(cases, cases, strict=True)), dict.fromkeys(cases, 1)
    if (raw / GROUPS_FILE).exists():  # a dataset of an ingest before duplicates were grouped has none
        for group, members in json.loads((raw / GROUPS_FILE).read_text())["groups"].items():
            group_of.update({case: group for case in members if case in group_of})
        with (raw / "manifest.csv").open(newline="") as handle:
            label_of.update({row["case_id"]: int(row["label"]) for row in csv.DictReader(handle) if row["split"]})
    path = preprocessed / "splits_final.json"
    with replacing(path, text=True) as handle:
        json.dump(grouped_folds(group_of, label_of, seed, FOLDS), handle, indent=1)
    return path


def preprocess(
    settings: Settings,
    request: PreprocessRequest,
    processes: int,
    run: ToolRun,
) -> tuple[dict[str, Any], dict[str, str]]:
    raw = request.raw(settings.layout)
    env = environment(settings)
    # nnU-Net's planner calls torch.set_num_threads(nnUNet_n_proc_DA), which refuses 0, the value that
    # turns off augmentation workers in training: planning takes nnU-Net's default instead.
    if env.get("nnUNet_n_proc_DA") == "0":
        del env["nnUNet_n_proc_DA"]
    dataset, workers = str(request.dataset_id), str(processes)

    def step(*command: str) -> None:
        run_tool(Path(command[0]).name, list(command), env, run)

    if request.plans_from_dataset is None:
        step(tool("nnUNetv2_plan_and_preprocess"), "-d", dataset, "-c", request.configuration, "-np", workers,
             "--verify_dataset_integrity", "-pl", PLANNERS[request.planner or "default"][0])  # fmt: skip
    else:  # nnU-Net's way to fine-tune across datasets: this dataset's fingerprint, the plans moved, preprocessed
        step(tool("nnUNetv2_extract_fingerprint"), "-d", dataset, "-np", workers, "--verify_dataset_integrity")
        step(tool("nnUNetv2_move_plans_between_datasets"), "-s", str(request.plans_from_dataset), "-t", dataset,
             "-sp", str(request.plans_from), "-tp", request.plans)  # fmt: skip
        # What nnU-Net's planner leaves beside its plans, and its preprocessing reads.
        shutil.copy(raw / "dataset.json", request.preprocessed(settings.layout) / "dataset.json")
        step(tool("nnUNetv2_preprocess"), "-d", dataset, "-plans_name", request.plans, "-c", request.configuration,
             "-np", workers)  # fmt: skip
    preprocessed = request.preprocessed(settings.layout)
    splits = write_splits(raw, preprocessed, request.seed)
    plans = json.loads((preprocessed / f"{request.plans}.json").read_text())
    configuration = plans["configurations"][request.configuration]
    metrics = {
        "cases": len(list((raw / "labelsTr").glob("*.nii.gz"))),
        "plans": request.plans,
        "folds": FOLDS,
        "patch_size": configuration["patch_size"],
        "batch_size": configuration["batch_size"],
    }
    artifacts = {
        "plans": str(preprocessed / f"{request.plans}.json"),
        "splits": str(splits),
        "preprocessed": str(preprocessed),
        "log": str(run.log),
    }
    return metrics, artifacts
