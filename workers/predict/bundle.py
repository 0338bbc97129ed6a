"""A trained model as a bundle that leaves the machine (`dispatch export`): the folds as nnU-Net's own export
(`nnUNetv2_install_pretrained_model_from_zip` installs it, plain `nnUNetv2_predict` predicts with it), the
trainer class they name where nnU-Net has none of that name, the classifier as its checkpoint and as ONNX with
a dynamic batch, the facts of its input, a model card (JSON and Markdown) and every file's SHA-256.

The bundle is built in a folder of its own beside `--out` and renamed into place whole: a failed export
leaves nothing behind.

    bundle.zip
      nnunet/Dataset<ID>_<name>.zip   nnU-Net's export of the folds (checkpoint_final.pth, plans, dataset.json)
      nnunet/trainers/*.py            the project's trainer, for nnUNet_extTrainer (trusted code: it is pickled)
      classifier/classifier.pt        the classifier's checkpoint, as this project loads it
      classifier/classifier.onnx      pictures (N, C, S, S) float32 0..255 -> fracture_probability (N,)
      data/picture_hashes.csv         the training release's pictures as two hashes each, nothing else
      model_card.json, MODEL_CARD.md  what it was trained on and how, its figures, its intended use
      SHA256SUMS                      every other file's SHA-256 (`sha256sum -c SHA256SUMS`)
"""

from __future__ import annotations

import csv
import json
import platform
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from shared.bundles import (
    CARD,
    CARD_MARKDOWN,
    CHECKSUMS,
    CLASSIFIER_FOLDER,
    FORMAT,
    HASH_COLUMNS,
    NNUNET_FOLDER,
    PICTURE_HASHES,
    sha256,
)
from shared.contract import Experiment
from shared.defaults import BACKBONE_NAMES, IMAGE_SEG, JOBS_TRAINER
from shared.errors import InputError
from shared.layout import dataset_name
from shared.settings import Settings
from workers.child import ToolRun
from workers.nnunet.commands import TRAINERS_DIR, environment, run_tool, tool

INTENDED_USE = (
    "Research on fracture segmentation and fracture classification in musculoskeletal radiographs. Not a "
    "medical device: not for diagnosis or treatment decisions. Its figures come from the internal test split: "
    "validate it on your own cohort before relying on any of them."
)
ONNX_INPUT, ONNX_OUTPUT = "pictures", "fracture_probability"


@dataclass(frozen=True)
class Provenance:
    """What the job table knows of the model: the runs that made it (as `dispatch show --json` gives them)."""

    ingest: dict[str, Any] | None  # the newest ingest or pipeline run of the dataset
    segmentation: dict[str, Any]  # the training run of the folds
    classifier: dict[str, Any] | None


@dataclass(frozen=True)
class ClassifierPart:
    checkpoint: Path
    input: str  # image or image+seg


def export_bundle(
    settings: Settings,
    experiment: Experiment,
    folds: list[int],
    classifier: ClassifierPart | None,
    provenance: Provenance,
    out: Path,
    run: ToolRun,
) -> dict[str, Any]:
    """Write the bundle to `out`; returns the model card."""
    _check_folds(settings, experiment, folds)
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=".export-"))
    try:
        staged = work / "bundle"
        nnunet = staged / NNUNET_FOLDER
        nnunet.mkdir(parents=True)
        name = dataset_name(experiment.dataset_id)
        command = [
            tool("nnUNetv2_export_model_to_zip"),
            *("-d", str(experiment.dataset_id), "-o", str(nnunet / f"{name}.zip")),
            *("-c", experiment.configuration, "-tr", experiment.trainer, "-p", experiment.plans),
            *("-f", *map(str, folds)),
        ]
        run_tool("nnUNetv2_export_model_to_zip", command, environment(settings), run)
        if experiment.trainer == JOBS_TRAINER:  # not one of nnU-Net's own: the receiving side needs its class
            shutil.copytree(TRAINERS_DIR, nnunet / "trainers", ignore=shutil.ignore_patterns("__pycache__"))
        facts = _classifier_files(classifier, staged / CLASSIFIER_FOLDER) if classifier else None
        card = _card(experiment, folds, facts, provenance, name)
        card["data"]["picture_hashes"] = _picture_hashes(settings, experiment, staged / PICTURE_HASHES)
        made = sorted(path for path in staged.rglob("*") if path.is_file())
        card["files"] = {str(path.relative_to(staged)): _sha256(path) for path in made}
        (staged / CARD).write_text(json.dumps(card, indent=1))
        (staged / CARD_MARKDOWN).write_text(model_card_markdown(card))
        files = sorted(path for path in staged.rglob("*") if path.is_file())
        sums = "".join(f"{_sha256(path)}  {path.relative_to(staged)}\n" for path in files)
        (staged / CHECKSUMS).write_text(sums)
        partial = work / out.name
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as bundle:
            for path in sorted(staged.rglob("*")):
                if path.is_file():
                    bundle.write(path, str(path.relative_to(staged)))
        if out.exists():
            raise InputError(f"{out} appeared while the bundle was written; it is not replaced")
        partial.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return card


def _check_folds(settings: Settings, experiment: Experiment, folds: list[int]) -> None:
    """nnU-Net exports a fold only with its final checkpoint, its validation summary and its progress plot."""
    for fold in folds:
        folder = experiment.fold_folder(settings.layout, fold)
        for needed in ("checkpoint_final.pth", "validation/summary.json", "progress.png"):
            if not (folder / needed).is_file():
                raise InputError(
                    f"fold {fold} has no {needed} in {folder}; train it to its end (dispatch retry its job) or "
                    "export the other folds"
                )


def _picture_hashes(settings: Settings, experiment: Experiment, target: Path) -> int | None:
    """The training dataset's manifest's hashes (every picture the ingest read), where this data root has it."""
    try:
        manifest = experiment.raw(settings.layout) / "manifest.csv"
    except InputError:
        return None  # an imported model's: its own bundle's hashes stay with its import
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or any(column not in rows[0] for column in HASH_COLUMNS):
        return None  # ingested before the manifest kept hashes
    target.parent.mkdir(parents=True)
    with target.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HASH_COLUMNS)
        writer.writerows([row[column] for column in HASH_COLUMNS] for row in rows)
    return len(rows)


def _classifier_files(part: ClassifierPart, folder: Path) -> dict[str, Any]:
    """The checkpoint as it is, its network as ONNX with the normalisation and the softmax inside, and the
    facts a user needs to feed it."""
    import torch

    from workers.classifier.augment import MEAN, STD
    from workers.classifier.model import load_classifier

    folder.mkdir(parents=True)
    shutil.copy(part.checkpoint, folder / "classifier.pt")
    classifier = load_classifier(part.checkpoint)
    channels = 2 if classifier.input == IMAGE_SEG else 1  # the radiograph, and nnU-Net's map with image+seg
    network = _probability_network(classifier.model.eval(), MEAN, STD)
    example = torch.zeros(2, channels, classifier.input_size, classifier.input_size)
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(
        network,
        (example,),
        input_names=[ONNX_INPUT],
        output_names=[ONNX_OUTPUT],
        dynamic_shapes=({0: batch},),
        dynamo=True,
        verbose=False,
    )
    program.save(str(folder / "classifier.onnx"))
    return {
        "backbone": classifier.backbone,
        "input": classifier.input,
        "channels": ["radiograph", *(["nnU-Net's fracture probability x 255"] if channels == 2 else [])],
        "input_size": classifier.input_size,
        "working_size": classifier.working_size,
        "square": classifier.square,
        "threshold": classifier.threshold,
        "preparation": (
            f"the radiograph grey (8-bit, upright) with its long side at {classifier.working_size} px"
            f"{' (squashed to a square)' if classifier.square else ', its aspect kept'}, letterboxed onto a black "
            f"{classifier.working_size} px square, resized to {classifier.input_size} px (bilinear, antialiased)"
        ),
        "normalisation": f"x / 255, then (x - {MEAN}) / {STD}; inside the ONNX graph, which takes 0..255",
        "onnx": {
            "input": ONNX_INPUT,
            "shape": ["batch", channels, classifier.input_size, classifier.input_size],
            "dtype": "float32",
            "output": ONNX_OUTPUT,
        },  # fmt: skip
    }


def _probability_network(model: Any, mean: float, std: float) -> Any:
    """The classifier as ONNX carries it: 0..255 pictures in, the fracture probability out."""
    import torch

    class Probability(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pictures: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.model((pictures / 255.0 - mean) / std), dim=1)[:, 1]

    return Probability().eval()


def _card(
    experiment: Experiment, folds: list[int], classifier: dict[str, Any] | None, provenance: Provenance, name: str
) -> dict[str, Any]:
    segmentation = provenance.segmentation
    ingest = provenance.ingest or {"params": {}, "metrics": {}}
    data = ingest["metrics"]
    card: dict[str, Any] = {
        "format": FORMAT,
        "name": name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "intended_use": INTENDED_USE,
        "data": {
            "dataset_id": experiment.dataset_id,
            "release": data.get("layout"),
            "images": data.get("images"),
            "fractured": data.get("positives"),
            "labels": data.get("labels"),
            "cases": data.get("cases"),
            "train_cases": data.get("train"),
            "test_cases": data.get("test"),
            "split": ingest["params"].get("split"),
            "working_size": data.get("working_size"),
            "patient_groups": data.get("given_groups"),
            "duplicate_groups": data.get("duplicate_groups"),
            "duplicate_pictures": data.get("duplicate_pictures"),
            "excluded_pictures": data.get("excluded_pictures"),
            "ingest_run": ingest.get("ref"),
        },
        "segmentation": {
            "run": segmentation["ref"],
            "trainer": experiment.trainer,
            "plans": experiment.plans,
            "configuration": experiment.configuration,
            "folds": folds,
            "epochs": segmentation["params"].get("epochs"),
            "iterations": segmentation["params"].get("iterations"),
            "wall_time_s": _wall_time(segmentation),
            "figures": _segmentation_figures(segmentation["metrics"]),
            "install": f"nnUNetv2_install_pretrained_model_from_zip nnunet/{name}.zip",
        },
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "gpu": _gpu()},
        "versions": {package: _version(package) for package in ("nnunetv2", "torch", "torchvision", "fracatlas-jobs")},
    }
    if classifier is not None and provenance.classifier is not None:
        trained = provenance.classifier
        figures = trained["metrics"].get(f"classifier {classifier['input']}", {})
        card["classifier"] = {
            **classifier,
            "name": BACKBONE_NAMES.get(classifier["backbone"], classifier["backbone"]),
            "run": trained["ref"],
            "weights": figures.get("weights"),
            "epochs": trained["params"].get("epochs"),
            "best_epoch": figures.get("best_epoch"),
            "wall_time_s": _wall_time(trained),
            "figures": {"test": figures.get("test"), "best_val_auc": figures.get("best_val_auc")},
        }
    return card


def _segmentation_figures(metrics: dict[str, Any]) -> dict[str, Any]:
    """Validation Dice per fold and the internal test split's figures (`dispatch evaluate` sets an external
    cohort's beside them), without the per-case table."""
    kept = ("folds", "cv_dice_mean")
    return {
        key: value
        for key, value in metrics.items()
        if key in kept or (key.startswith("test_") and key != "test_dice_per_case")
    }


def _wall_time(run: dict[str, Any]) -> float | None:
    started, finished = run.get("created_at"), run.get("finished_at")
    if not started or not finished:
        return None
    return round((datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds(), 1)


def _gpu() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return sha256(handle)


def model_card_markdown(card: dict[str, Any]) -> str:
    """MODEL_CARD.md: the card's JSON as a person reads it."""
    data, segmentation = card["data"], card["segmentation"]
    lines = [
        f"# Model card: {card['name']}",
        "",
        f"Bundle format `{card['format']}`, made {card['created']}.",
        "",
        "## Intended use",
        "",
        card["intended_use"],
        "",
        "## Data",
        "",
        *(f"- {key.replace('_', ' ')}: {value}" for key, value in data.items() if value not in (None, {}, [])),
        "",
        "## Segmentation (nnU-Net v2)",
        "",
        *(f"- {key.replace('_', ' ')}: {value}" for key, value in segmentation.items() if key != "figures"),
        *(f"- {key.replace('_', ' ')}: {json.dumps(value)}" for key, value in segmentation["figures"].items()),
    ]
    if "classifier" in card:
        classifier = card["classifier"]
        lines += ["", f"## Classifier ({classifier['name']})", ""]
        lines += [f"- {key.replace('_', ' ')}: {json.dumps(value)}" for key, value in classifier.items()]
    lines += ["", "## Versions and machine", ""]
    lines += [f"- {key}: {value}" for key, value in {**card["versions"], **card["machine"]}.items()]
    lines += ["", "## Files (SHA-256)", "", *(f"- `{name}`: `{digest}`" for name, digest in card["files"].items())]
    return "\n".join(lines) + "\n"
