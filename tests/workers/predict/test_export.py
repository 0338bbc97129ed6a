"""`dispatch export`: dataset 400's five folds (trained at a token budget) and a classifier as one bundle; its
checksums hold; in a process that cannot import this project, nnU-Net's own install and plain
`nnUNetv2_predict` give the very masks and probabilities the folds give here, and onnxruntime the classifier's
probabilities; the model card says what the model is. `dispatch import` on a second stack with a data root of
its own: a changed bundle refused with nothing installed, the whole one installed under another dataset id,
and `dispatch predict` there (by the registered model's name) gives what it gives here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import REDIS_PASSWORD, TRAINING_DATASET, Stack, free_port, local_stack, run_json, tiny_model
from own_releases import external_cohort
from PIL import Image
from tracking_reads import mlflow_client, wait_for_mlflow

# The first model test of a session (make test-long) trains five tiny folds and a classifier; the others take them.
pytestmark = [
    pytest.mark.parametrize("stack", ["sqlite"], indirect=True),
    pytest.mark.timeout(1500),
    pytest.mark.long,  # make test-long: one tiny model there serves this, the export and the external validation
]

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


def isolated(script: str, *args: str, env: dict[str, str], cwd: Path) -> None:
    """`script` in a fresh interpreter that cannot import this project (-I: no PYTHONPATH, no cwd)."""
    command = [sys.executable, "-I", "-c", WITHOUT_THE_PROJECT + script, *args]
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_a_bundle_leaves_the_machine_and_predicts_the_same_elsewhere(system: Stack, tmp_path: Path) -> None:
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

    trained, classified = tiny_model(system, tmp_path / "train-release")
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

    imported_elsewhere_predicts_the_same(system, bundle, trained, classified, classifier.threshold, tmp_path)


def imported_elsewhere_predicts_the_same(
    system: Stack, bundle: Path, trained: dict, classified: dict, classifier_threshold: float, tmp_path: Path
) -> None:
    """The bundle imported at another site: a stack of its own, with its own data root, job table and broker."""
    import csv

    from workers.ingest.synthetic import make_synthetic_release

    # The export is a version of the bundle model in this stack's MLflow.
    name = f"Dataset{TRAINING_DATASET}_FracAtlas-bundle"
    wait_for_mlflow(system, lambda: mlflow_client(system).search_model_versions(f"name='{name}'"), "the bundle")

    pictures = sorted((make_synthetic_release(tmp_path / "new", 4, 2, seed=11) / "images").rglob("*.jpg"))[:3]
    here = run_json(system, "predict", *map(str, pictures), "--classifier", classified["ref"],
                    "--segmentation", trained["ref"], "--out", str(tmp_path / "here"))  # fmt: skip
    broker = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0"
    with local_stack(tmp_path / "site-b", "sqlite", {"BROKER_URL": broker}) as elsewhere:
        changed = tmp_path / "changed.zip"
        with zipfile.ZipFile(bundle) as source, zipfile.ZipFile(changed, "w") as target:
            for info in source.infolist():
                content = source.read(info)
                if info.filename == "classifier/classifier.pt":
                    content = content[:-1] + bytes([content[-1] ^ 1])
                target.writestr(info, content)
        refused = elsewhere.dispatch("import", str(changed))
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "classifier/classifier.pt does not match its SHA-256 in SHA256SUMS" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert not (elsewhere.data_root / "nnUNet_results").exists(), "nothing installed"
        no_such_id = elsewhere.dispatch("import", str(bundle), "--dataset-id", "0")
        assert no_such_id.returncode == 2 and "--dataset-id" in no_such_id.stderr

        imported = run_json(elsewhere, "import", str(bundle), "--dataset-id", "401")
        assert imported["metrics"]["folds"] == [0, 1, 2, 3, 4]
        installed = elsewhere.data_root / "nnUNet_results" / "Dataset401_FracAtlas"
        assert len(list(installed.glob("*/fold_*/checkpoint_final.pth"))) == 5
        again = elsewhere.dispatch("import", str(bundle), "--dataset-id", "401")
        assert again.returncode == 2 and "dataset 401 is in this data root already" in again.stderr

        model = "Dataset401_FracAtlas-classifier"
        wait_for_mlflow(elsewhere, lambda: mlflow_client(elsewhere).search_model_versions(f"name='{model}'"), model)
        there = run_json(elsewhere, "predict", *map(str, pictures), "--model", model, "--out", str(tmp_path / "there"))
        assert there["params"]["seg_run"] == imported["id"] == there["params"]["classifier_run"]
        # The training pictures' hashes came with the bundle: an evaluation there leaves them out too.
        training = make_synthetic_release(tmp_path / "training", fractured=20, non_fractured=16)  # dataset 400's
        cohort = external_cohort(training, make_synthetic_release(tmp_path / "other", 10, 8, seed=7), tmp_path / "c")
        evaluated = run_json(elsewhere, "evaluate", "--source", str(cohort), "--categories", "Break=fracture")
        assert evaluated["params"]["seg_run"] == imported["id"] and evaluated["metrics"]["left_out"]["pictures"] == 3
        assert evaluated["metrics"]["classifier"]["threshold"] == classifier_threshold

    def rows(out: Path) -> list[dict[str, str]]:
        with (out / "predictions.csv").open() as handle:
            return list(csv.DictReader(handle))

    mine, theirs = rows(Path(here["artifacts"]["out"])), rows(Path(there["artifacts"]["out"]))
    assert [row["name"] for row in mine] == [row["name"] for row in theirs] and len(mine) == 3
    for ours, other in zip(mine, theirs, strict=True):
        # predictions.csv keeps four decimals: the probabilities agree to its last one.
        assert abs(float(ours["fracture_probability"]) - float(other["fracture_probability"])) <= 1e-4, ours["name"]
        assert ours["fracture_area_px"] == other["fracture_area_px"], ours["name"]
        mask = ours["mask"]
        same = np.array_equal(
            np.asarray(Image.open(tmp_path / "here" / mask)), np.asarray(Image.open(tmp_path / "there" / mask))
        )
        assert same, f"{mask}: the same mask at both sites"
