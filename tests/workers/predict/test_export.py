"""`dispatch export`: dataset 400's five folds (trained at a token budget) and a classifier as one bundle; its
checksums hold; in a process that cannot import this project, nnU-Net's own install and plain
`nnUNetv2_predict` give the very masks and probabilities the folds give here, and onnxruntime the classifier's
probabilities; the model card says what the model is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_TRAINER, TRAINING_DATASET, Stack, preprocess_training_dataset

pytestmark = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)

# Run before a script: the project's own packages made unimportable, as on a machine that has only the bundle.
WITHOUT_THE_PROJECT = """
import sys
sys.meta_path[:] = [finder for finder in sys.meta_path if "editable" not in repr(finder).lower()]
sys.path[:] = [entry for entry in sys.path if "__editable__" not in entry]
for name in ("workers", "shared", "services"):
    try:
        __import__(name)
    except ImportError:
        continue
    raise SystemExit(f"this process can import the project's {name}")
"""
INSTALL_AND_PREDICT = """
import sys
from nnunetv2.model_sharing.model_import import install_model_from_zip_file
install_model_from_zip_file(sys.argv[1])
sys.argv = ["nnUNetv2_predict", *sys.argv[2:]]
from nnunetv2.inference.predict_from_raw_data import predict_entry_point
predict_entry_point()
"""
RUN_ONNX = """
import sys, numpy as np, onnxruntime
session = onnxruntime.InferenceSession(sys.argv[1])
pictures = np.load(sys.argv[2])
np.save(sys.argv[3], session.run(None, {"pictures": pictures})[0])
"""


def run_json(system: Stack, *args: str) -> dict:
    result = system.dispatch(*args, "--wait", "--json", timeout=600)
    run = json.loads(result.stdout)
    assert result.returncode == 0, run.get("error") or result.stderr
    return run


def isolated(script: str, *args: str, env: dict[str, str], cwd: Path) -> None:
    """`script` in a fresh interpreter that cannot import this project (-I: no PYTHONPATH, no cwd)."""
    command = [sys.executable, "-I", "-c", WITHOUT_THE_PROJECT + script, *args]
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_a_bundle_leaves_the_machine_and_predicts_the_same_without_the_project(system: Stack, tmp_path: Path) -> None:
    import torch

    from shared.contract import Experiment
    from shared.layout import DataRoot
    from shared.settings import get_settings
    from workers.classifier.data import load_set
    from workers.classifier.input_size import resized
    from workers.classifier.model import load_classifier
    from workers.classifier.train import predict_scores
    from workers.nnunet.commands import environment
    from workers.nnunet.folds import predict_command
    from workers.nnunet.nifti import read_case

    preprocess_training_dataset(system, tmp_path / "train-release")
    trained = run_json(system, "train", "--dataset-id", str(TRAINING_DATASET), "--folds", "all", *TINY_TRAINER)
    classified = run_json(system, "classify", "--dataset-id", str(TRAINING_DATASET), "--input", "image",
                          "--epochs", "1", "--batch-size", "8", "--weights", "none")  # fmt: skip
    bundle = tmp_path / "bundle.zip"
    exported = run_json(system, "export", trained["ref"], "--classifier", classified["ref"], "--out", str(bundle))
    assert exported["metrics"]["folds"] == [0, 1, 2, 3, 4] and bundle.is_file()
    again = system.dispatch("export", trained["ref"], "--out", str(bundle))
    assert again.returncode == 2 and "exists already; it is not replaced" in again.stderr

    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(unpacked)
    checked = subprocess.run(["sha256sum", "--check", "--strict", "SHA256SUMS"], cwd=unpacked, capture_output=True)
    assert checked.returncode == 0, checked.stdout
    card = json.loads((unpacked / "model_card.json").read_text())
    assert card["format"] == "fracatlas-jobs-bundle/1" and "not for diagnosis" in card["intended_use"]
    assert card["segmentation"]["run"] == trained["ref"] and card["segmentation"]["folds"] == [0, 1, 2, 3, 4]
    assert card["data"]["images"] == 36 and card["data"]["fractured"] == 20, "the ingest's counts"
    classifier = load_classifier(Path(classified["artifacts"]["checkpoint image"]))
    facts = card["classifier"]
    assert (facts["run"], facts["backbone"]) == (classified["ref"], "resnet18")
    assert facts["threshold"] == classifier.threshold
    assert facts["onnx"]["shape"] == ["batch", 1, classifier.input_size, classifier.input_size]
    assert set(card["files"]) == {line.split("  ", 1)[1] for line in (unpacked / "SHA256SUMS").read_text().splitlines()
                                  if not line.endswith(("model_card.json", "MODEL_CARD.md"))}  # fmt: skip
    assert "## Intended use" in (unpacked / "MODEL_CARD.md").read_text()

    # The folds here: plain nnUNetv2_predict of dataset 400's test cases, with probabilities.
    layout = DataRoot(system.data_root)
    experiment = Experiment.parse(trained["params"])
    cases = experiment.raw(layout) / "imagesTs"
    here, there = tmp_path / "here", tmp_path / "there"
    command = predict_command(experiment, cases, here, [0, 1, 2, 3, 4], probabilities=True)
    # One thread in both runs: a different thread count sums in another order (1e-4 apart, seen in a clean clone).
    threads = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    ours = subprocess.run(command, env=environment(get_settings(), threads), capture_output=True, text=True)
    assert ours.returncode == 0, ours.stdout[-2000:] + ours.stderr[-2000:]
    # The bundle elsewhere: nnU-Net's install into empty folders, its trainer from the bundle, no project.
    elsewhere = tmp_path / "elsewhere"
    trainers = unpacked / "nnunet" / "trainers"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "nnUNet_extTrainer": str(trainers),
           **{name: str(elsewhere / name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")},
           **threads, "nnUNet_n_proc_DA": "0", "nnUNet_def_n_proc": "1"}  # fmt: skip
    inner = next((unpacked / "nnunet").glob("*.zip"))
    isolated(INSTALL_AND_PREDICT, str(inner), "-i", str(cases), "-o", str(there), "-d", str(TRAINING_DATASET),
             "-c", "2d", "-tr", experiment.trainer, "-p", experiment.plans, "-f", "0", "1", "2", "3", "4",
             "--save_probabilities", "-device", "cpu", env=env, cwd=tmp_path)  # fmt: skip
    predicted = sorted(path.name for path in here.glob("*.nii.gz"))
    assert predicted and predicted == sorted(path.name for path in there.glob("*.nii.gz"))
    for name in predicted:
        assert np.array_equal(read_case(here / name), read_case(there / name)), f"{name}: the same mask"
        stem = name.removesuffix(".nii.gz")
        with np.load(here / f"{stem}.npz") as mine, np.load(there / f"{stem}.npz") as theirs:
            # Two nnU-Net processes of the same folds differ by up to about 2e-4 (seen: 1.0e-4, 2.1e-4).
            assert np.abs(mine["probabilities"] - theirs["probabilities"]).max() < 1e-3, stem

    # The classifier: onnxruntime on three cached pictures, against the checkpoint here.
    cache = load_set(layout.classification_cache(TRAINING_DATASET))
    batch = resized(torch.from_numpy(np.array(cache.images[:3]))[:, None], classifier.input_size)
    expected = predict_scores(classifier.model, batch, torch.device("cpu"))
    np.save(tmp_path / "pictures.npy", batch.numpy().astype(np.float32))
    isolated(RUN_ONNX, str(unpacked / "classifier" / "classifier.onnx"), str(tmp_path / "pictures.npy"),
             str(tmp_path / "scores.npy"), env=env, cwd=tmp_path)  # fmt: skip
    assert np.abs(np.load(tmp_path / "scores.npy") - expected).max() < 1e-4, "ONNX gives the classifier's answer"
