"""The ResNet18 classifier fed by the segmentation, through the job system on CPU-backed gpu-queue workers:
both input modes side by side, the segmentation channel without leaks, weights from a file, and
`dispatch predict`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_TRAINER, Stack, preprocess_training_dataset
from conftest import TRAINING_DATASET as DATASET
from PIL import Image, ImageOps
from tracking_reads import download_png, mlflow_client, mlflow_run_of, nested_runs, steps, uploaded, versions_of

pytestmark = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)

SHORT = ("--epochs", "2", "--batch-size", "8")


def run_json(system: Stack, *args: str) -> dict:
    result = system.dispatch(*args, "--wait", "--json")
    run = json.loads(result.stdout)
    assert result.returncode == 0, run.get("error") or result.stderr
    return run


@pytest.fixture(scope="module")
def segmented(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Dataset 400 with all five folds trained. test_nnunet_training (run before this module: conftest's
    DOMAIN_ORDER) leaves some folds trained and others stopped; a `--folds all` run trains only what is left."""
    preprocess_training_dataset(stack, tmp_path_factory.mktemp("train-release"))
    run = run_json(stack, "train", "--dataset-id", str(DATASET), "--folds", "all", *TINY_TRAINER)
    return {"run": run}


def test_classify_trains_both_inputs_side_by_side(segmented: dict, system: Stack, tmp_path: Path) -> None:
    run = run_json(system, "classify", "--dataset-id", str(DATASET), "--compare", *SHORT)
    assert run["params"]["inputs"] == ["image", "image+seg"] and run["params"]["seg_run"] == segmented["run"]["id"]
    kinds = [job["kind"] for job in run["jobs"]]
    assert kinds == ["channel", "classifier", "classifier"], "the map first, then one classifier per input"
    for mode in ("image", "image+seg"):
        metrics = run["metrics"][f"classifier {mode}"]
        test = metrics["test"]
        # 36 images (20 fractured, 16 not): 15% for validation and for test is 5 each
        assert metrics["split"] == {"train": 26, "val": 5, "test": 5} and test["images"] == 5
        assert sum(test["confusion"].values()) == test["images"]
        for key in ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "roc_auc", "pr_auc"):
            assert 0 <= test[key] <= 1, key
        for key in ("roc_png", "confusion_png"):
            assert Image.open(run["artifacts"][f"{key} {mode}"]).format == "PNG"
    job = next(job for job in run["jobs"] if job["kind"] == "classifier")
    assert job["progress"]["step"] == job["metrics"]["epochs_run"] == 2 and "val AUC" in job["progress"]["message"]
    shown = system.dispatch("show", run["ref"]).stdout
    assert "TEST SPLIT" in shown and "image+seg" in shown and "balanced accuracy" in shown
    # MLflow: per-epoch curves of each classifier, the full metric set, the pictures, two model versions
    parent = mlflow_run_of(system, run)
    jobs = nested_runs(system, parent)
    assert set(jobs) == {f"nnU-Net fracture maps ({segmented['run']['ref']})", "ResNet18 image", "ResNet18 image+seg"}
    for mode in ("image", "image+seg"):
        classifier = jobs[f"ResNet18 {mode}"]
        for key in ("train_loss", "val_auc", "images_per_s"):
            assert steps(system, classifier.info.run_id, key) == [1, 2], (mode, key)
        figures = classifier.data.metrics
        for key in ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "roc_auc", "pr_auc"):
            assert f"test/{key}" in figures, key
        tag = mode.replace("+", "_")
        uploaded(system, classifier.info.run_id, {f"roc_{tag}.png", f"pr_{tag}.png", f"confusion_{tag}.png"})
        uploaded(system, parent.info.run_id, {f"classifier_{tag}/pr_{tag}.png"})
        download_png(system, parent.info.run_id, f"classifier_{tag}/pr_{tag}.png", tmp_path)
    versions = versions_of(system, f"Dataset{DATASET}_FracAtlas-classifier", run["ref"], count=2)
    assert {version.tags["fracatlas.input"] for version in versions} == {"image", "image+seg"}


def test_the_map_is_out_of_fold_for_nnunet_training_cases(segmented: dict, system: Stack) -> None:
    from workers.imaging.geometry import letterbox
    from workers.nnunet.ensemble import fracture_channel

    data_root = Path(system.env["DATA_ROOT"])
    cache = data_root / "classification" / f"Dataset{DATASET}_FracAtlas"
    channel = np.load(cache / f"fracture_probability_r{segmented['run']['id']}.npy")
    images = np.load(cache / "images.npy")
    assert channel.shape == images.shape and channel.dtype == np.uint8
    with (cache / "labels.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    splits = json.loads(
        next((data_root / "nnUNet_preprocessed").glob(f"Dataset{DATASET}_*/splits_final.json")).read_text()
    )
    results = next((data_root / "nnUNet_results").glob(f"Dataset{DATASET}_*/*__2d"))
    checked = 0
    for fold, split in enumerate(splits):
        for case in split["val"][:1]:
            index = next(int(row["index"]) for row in rows if row["image_id"] == f"{case}.jpg")
            held_out = fracture_channel(results / f"fold_{fold}" / "validation" / f"{case}.npz")
            assert held_out.shape == (int(rows[index]["rows"]), int(rows[index]["columns"])), "the case's own shape"
            expected = letterbox(np.rint(held_out * 255).astype(np.uint8), images.shape[-1])
            assert np.array_equal(channel[index], expected), case
            checked += 1
    assert checked == 5
    others = [int(row["index"]) for row in rows if row["segmentation_split"] != "train"]
    assert others, "test cases and non-fractured images get the ensemble's map"


def test_auto_input_reuses_the_map_and_takes_weights_from_a_file(
    segmented: dict, system: Stack, tmp_path: Path
) -> None:
    from shared.read_model import latest_succeeded_run

    earlier = latest_succeeded_run(("classify",), DATASET)
    assert earlier is not None
    checkpoint = earlier["artifacts"]["checkpoint image+seg"]
    run = run_json(system, "classify", "--dataset-id", str(DATASET), "--weights", checkpoint, "--epochs", "1")
    assert run["params"]["inputs"] == ["image+seg"], "every fold trained: the map is used by default"
    assert run["jobs"][0]["metrics"] == {"reused": True}, "the map of a run is built once"
    assert run["jobs"][1]["metrics"]["request"]["weights"] == checkpoint
    missing = system.dispatch("classify", "--dataset-id", str(DATASET), "--weights", str(tmp_path / "none.pt"))
    assert missing.returncode == 2 and "none.pt is not a file" in missing.stderr


def test_a_sweep_searches_image_seg_where_the_map_exists(segmented: dict, system: Stack, tmp_path: Path) -> None:
    default = json.loads(system.dispatch("sweep", "--dataset-id", str(DATASET), "--trials", "1", "--json").stdout)
    assert default["params"]["space"]["input"] == {"choices": ["image", "image+seg"]}, "every fold trained"
    assert system.dispatch("cancel", default["ref"]).returncode == 0
    space = tmp_path / "space.yaml"
    space.write_text("input: [image, image+seg]\nepochs: 1\nbatch_size: 8\n")
    run = run_json(system, "sweep", "--dataset-id", str(DATASET), "--space", str(space), "--sampler", "grid")
    assert run["params"]["seg_run"] == segmented["run"]["id"]
    assert [job["kind"] for job in run["jobs"]] == ["channel", "trial", "trial", "sweep-end"]
    assert run["jobs"][0]["metrics"] == {"reused": True}, "the map of a run is built once"
    trials = [job for job in run["jobs"] if job["kind"] == "trial"]
    assert sorted(job["metrics"]["params"]["input"] for job in trials) == ["image", "image+seg"]
    best = run["metrics"]["best"]["params"]["input"]
    assert Path(run["artifacts"][f"checkpoint {best}"]).exists()


def test_classify_refuses_what_it_cannot_use(system: Stack) -> None:
    result = system.dispatch("classify", "--dataset-id", "411")
    assert result.returncode == 1 and "run `dispatch ingest --dataset-id 411` first" in result.stderr
    result = system.dispatch("predict", "/no/such/picture.jpg")
    assert result.returncode == 2 and "/no/such/picture.jpg does not exist" in result.stderr


def test_predict_writes_masks_overlays_and_a_table_and_skips_a_bad_file(
    segmented: dict, system: Stack, tmp_path: Path
) -> None:
    dataset = next((Path(system.env["DATA_ROOT"]) / "nnUNet_raw").glob(f"Dataset{DATASET}_*"))
    with (dataset / "manifest.csv").open() as handle:
        pictures = [Path(row["source_file"]) for row in csv.DictReader(handle)][:2]
    case = next((dataset / "imagesTs").glob("*.nii.gz"))
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is no JPEG")
    bomb = tmp_path / "bomb.png"
    Image.new("1", (9000, 9000)).save(bomb)  # 81 million pixels in a few kilobytes
    out = tmp_path / "predictions"
    # Hostile --out contents: a link where a mask will go, and a folder of the user's that looks like ours.
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    (out / f"{pictures[0].stem}_mask.png").symlink_to(victim)
    (out / ".work").mkdir()
    (out / ".work" / "keep.txt").write_text("mine")
    refused = system.dispatch("predict", str(case), "--out", str(victim / "predictions"))
    assert refused.returncode == 2 and f"{victim} is not a folder" in refused.stderr, "checked before a run exists"
    run = run_json(system, "predict", *map(str, pictures), str(case), str(bad), str(bomb), "--out", str(out))
    assert run["metrics"]["predicted"] == 3
    skipped = run["metrics"]["skipped"]
    assert sorted(skipped) == sorted([str(bad.resolve()), str(bomb.resolve())]), "bad files are named and skipped"
    assert "9000x9000 pixels, over the cap" in skipped[str(bomb.resolve())]
    assert victim.read_text() == "untouched" and not (out / f"{pictures[0].stem}_mask.png").is_symlink()
    assert (out / ".work" / "keep.txt").read_text() == "mine"
    assert not list(out.glob(".predict-work-*")), "only its own temporary folder is removed, and it is"
    with (out / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [Path(row["file"]).name for row in rows] == [*(p.name for p in pictures), case.name]
    for row, source in zip(rows[:2], pictures, strict=True):
        assert 0 <= float(row["fracture_probability"]) <= 1 and row["predicted_label"] in ("fracture", "no fracture")
        mask = Image.open(out / row["mask"])
        assert mask.size == ImageOps.exif_transpose(Image.open(source)).size, "the upright picture's own size"
        assert int(row["fracture_area_px"]) == int((np.asarray(mask) > 0).sum())
        assert Image.open(out / row["overlay"]).mode == "RGB"
    shown = system.dispatch("show", run["ref"]).stdout
    assert "P(FRACTURE)" in shown and pictures[0].name in shown
    # The classifier named by its registered model version instead of its run
    name = f"Dataset{DATASET}_FracAtlas-classifier"
    client = mlflow_client(system)
    version = max(client.search_model_versions(f"name='{name}'"), key=lambda found: int(found.version))
    client.set_registered_model_alias(name, "champion", version.version)
    chosen = run_json(system, "predict", str(case), "--model", f"{name}@champion", "--out", str(tmp_path / "by-model"))
    assert chosen["params"]["classifier_run"] == int(version.tags["fracatlas.run"].lstrip("r"))
    assert chosen["params"]["input"] == version.tags["fracatlas.input"]
    missing = system.dispatch("predict", str(case), "--model", f"{name}@nobody")
    assert missing.returncode == 2 and "no such registered model version" in missing.stderr


def test_every_backbone_trains_through_the_stack_and_predicts(segmented: dict, system: Stack, tmp_path: Path) -> None:
    """One epoch of each other backbone on the image (the default, resnet18, is trained above), what it
    started from recorded; each checkpoint read back as predict reads it, and one through `dispatch predict`."""
    import torch

    from shared.defaults import BACKBONE_NAMES, BACKBONES
    from shared.layout import DataRoot
    from workers.classifier.data import load_set
    from workers.classifier.model import load_classifier
    from workers.classifier.train import predict_scores

    cache = load_set(DataRoot(system.data_root).classification_cache(DATASET))
    pictures = torch.from_numpy(np.array(cache.images[:4]))[:, None]  # (4, 1, 64, 64) uint8, a copy of the map
    runs = {}
    for backbone in BACKBONES[1:]:
        runs[backbone] = run = run_json(
            system, "classify", "--dataset-id", str(DATASET), "--input", "image", "--backbone", backbone,
            "--epochs", "1", "--batch-size", "8", "--input-size", "64",
        )  # fmt: skip
        metrics = run["metrics"]["classifier image"]
        assert metrics["backbone"] == backbone
        job = next(job for job in run["jobs"] if job["kind"] == "classifier")
        assert job["name"] == f"{BACKBONE_NAMES[backbone]} image", "the job is named by its backbone"
        # --weights auto: ImageNet's where the file is cached or answers, else from scratch, saying why
        assert metrics["weights"].startswith(("imagenet (file ", "none (no ImageNet file: ")), metrics["weights"]
        classifier = load_classifier(Path(run["artifacts"]["checkpoint image"]))
        scores = predict_scores(classifier.model, pictures, torch.device("cpu"))
        assert scores.shape == (4,) and ((scores >= 0) & (scores <= 1)).all(), backbone
    shown = system.dispatch("show", runs["convnext_tiny"]["ref"]).stdout
    assert "backbone" in shown and "convnext_tiny" in shown and "weights" in shown
    case = next(next((system.data_root / "nnUNet_raw").glob(f"Dataset{DATASET}_*")).glob("imagesTs/*.nii.gz"))
    last = runs["efficientnet_v2_s"]
    predicted = run_json(system, "predict", str(case), "--classifier", last["ref"], "--out", str(tmp_path / "out"))
    assert predicted["params"]["classifier_run"] == last["id"] and predicted["metrics"]["predicted"] == 1
