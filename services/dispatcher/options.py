"""The command-line options of `dispatch`. Their defaults are the requests' (shared/defaults.py, plain
values, so that --help loads no pydantic); the requests (shared/contract.py) refuse a bad value, naming
the option."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from shared.defaults import (
    ALL_FOLDS,
    ANNOTATION_TOOLS,
    BACKBONES,
    CLASSIFIER_INPUTS,
    CLASSIFY,
    CONFIGURATION,
    CONFLICTS,
    DEFAULT_DATASET_ID,
    INGEST,
    LABEL_STUDIO_FILES,
    PLANNERS,
    PLANS,
    RELEASE_FORMATS,
    SPLITS,
    SUPERRES,
)


def options(*decorators: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def apply(function: Any) -> Any:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


wait = click.option("--wait", is_flag=True, help="Follow the run until it ends; exit 1 if it fails.")
as_json = click.option("--json", "as_json", is_flag=True, help="Print a machine-readable object.")
dataset = click.option(
    "--dataset-id",
    default=DEFAULT_DATASET_ID,
    show_default=True,
    type=int,
    help="nnU-Net dataset id (1-999): nnUNet_raw/Dataset<ID>_FracAtlas.",
)
pictures = click.option(
    "--source", required=True, help="The release whose images/ folder holds the radiographs (FracAtlas or COCO)."
)
_source = click.option(
    "--source",
    help="The release: the unpacked FracAtlas archive, or a folder (or export zip) holding one COCO file and "
    "its pictures (docs/own-data.md).",
)
_release_files = options(
    click.option(
        "--format",
        default="auto",
        show_default=True,
        type=click.Choice(RELEASE_FORMATS),
        help="The release's layout; auto: FracAtlas where its folders are, else COCO.",
    ),
    click.option("--coco", type=click.Path(), help="The COCO file, where --source holds several or it lies elsewhere."),
    click.option("--images", type=click.Path(), help="The folder the COCO file's file_names are relative to."),
)
_labels_and_groups = options(
    click.option(
        "--positive", help="COCO: the categories that make a picture positive for the classifier; default: all chosen."
    ),
    click.option(
        "--labels", type=click.Path(), help="COCO: a CSV of file_name,label (1 or 0): the image-level labels."
    ),
    click.option(
        "--groups", type=click.Path(), help="A CSV of file_name,group (a patient or study id): each group on one side."
    ),
)
release = options(
    _source,
    _release_files,
    click.option(
        "--categories", help="COCO: the categories that become nnU-Net's labels 1..K, in order (A,B); default: all."
    ),
    _labels_and_groups,
)
cohort = options(
    click.option(
        "--source",
        help="The external cohort, read as the ingest reads a release: a FracAtlas archive, or a folder (or export "
        "zip) holding one COCO file and its pictures (DICOM among them under pseudonyms).",
    ),
    _release_files,
    click.option(
        "--categories",
        help="COCO: the cohort's categories to score, each by the model's name or mapped onto it (Break=fracture); "
        "default: all with masks, each a category the model knows.",
    ),
    _labels_and_groups,
)
segmentation = click.option(
    "--segmentation",
    "seg_ref",
    help="The training run whose folds give the masks (r12, or an import) [default: the one whose map the "
    "classifier reads, else the newest on its dataset].",
)
annotations = options(
    click.option(
        "--annotations",
        type=click.Choice(ANNOTATION_TOOLS),
        help="The masks also as the tool imports them: cvat (a COCO 1.0 zip) or label-studio (tasks with their "
        "predictions, and the labelling config), and pictures/ as the tool is to show them.",
    ),
    click.option(
        "--image-url",
        default=LABEL_STUDIO_FILES,
        show_default=True,
        help="label-studio: a task's image is this + the picture's name in --out's pictures/ (the default: Label "
        "Studio's local files, with pictures/ its document root).",
    ),
)
configuration = click.option(
    "--config",
    "configuration",
    default=CONFIGURATION,
    show_default=True,
    help="nnU-Net configuration.",
)
plans = click.option(
    "--plans",
    help=f"nnU-Net plans identifier [default: preprocess, the planner's; train, the plans of the dataset's newest "
    f"preprocessing, else {PLANS}].",
)
planner = click.option(
    "--planner",
    type=click.Choice(list(PLANNERS)),
    default="default",
    show_default=True,
    help="nnU-Net's experiment planner, and the plans the folds then train with: default (nnU-Net's UNet, "
    "about 8 GB of GPU memory), resenc-m (residual encoder, 9-11 GB), resenc-l (24 GB); nnU-Net now recommends "
    "the residual-encoder presets.",
)


def _ingest_option(name: str, help: str, **kwargs: Any) -> Callable[[Any], Any]:
    field = name.removeprefix("--").replace("-", "_")
    return click.option(name, default=INGEST[field], show_default=True, help=help, **kwargs)


ingest = options(
    _ingest_option("--size", "Each picture's long side (32-2048); the aspect ratio is kept.", type=int),
    click.option(
        "--square", type=int, help="The notebook's layout instead: every picture squashed to N x N (e.g. 224)."
    ),
    _ingest_option(
        "--test-fraction",
        "Share of nnU-Net's cases held out as imagesTs (stratified, by label and region).",
        type=float,
    ),
    _ingest_option("--seed", "Seed of the splits.", type=int),
    _ingest_option(
        "--split",
        "Seeded stratified split, or the release's Utilities/Fracture Split.",
        type=click.Choice(SPLITS),
    ),
    _ingest_option(
        "--negatives", "Non-fractured cases in nnU-Net's dataset (empty masks): all, none, or a ratio to the fractured."
    ),
    _ingest_option(
        "--conflicts",
        "Duplicate pictures with both labels: drop them all, keep the fractured copies, or fail.",
        type=click.Choice(CONFLICTS),
    ),
    click.option(
        "--upscale",
        default="bicubic",
        show_default=True,
        help="Pictures smaller than --size: bicubic, or sr (the newest sr-train run's networks), sr:r12 (a run's), "
        "sr:NAME/VERSION or sr:NAME@ALIAS (a registered version).",
    ),
    click.option("--overwrite", is_flag=True, help="Replace an existing dataset with this id."),
)
train = options(
    click.option(
        "--folds", default=ALL_FOLDS, show_default=True, help=f"A range ({ALL_FOLDS}), a list (0,2) or 'all'."
    ),
    configuration,
    click.option(
        "--trainer",
        default=None,
        help="nnU-Net trainer class [default: nnUNetTrainer; nnUNetTrainerJobs with --epochs].",
    ),
    plans,
    click.option("--epochs", type=int, help="Epochs (through the project's nnUNetTrainerJobs)."),
    click.option("--iterations", type=int, help="Training iterations per epoch (nnUNetTrainerJobs)."),
    click.option("--save-every", type=int, help="Checkpoint every N epochs (nnUNetTrainerJobs; default 5)."),
)


def _superres_option(name: str, help: str | None = None, **kwargs: Any) -> Callable[[Any], Any]:
    field = name.removeprefix("--").replace("-", "_")
    return click.option(name, default=SUPERRES[field], show_default=True, help=help, **kwargs)


superres = options(
    _superres_option("--scales", "x2, x4 or both (2,4): one network and one job per scale."),
    _superres_option("--iterations", "Training iterations (batches of crops).", type=int),
    _superres_option("--patch", "Input pixels per side of a training crop.", type=int),
    _superres_option("--batch-size", type=int),
    _superres_option("--learning-rate", type=float),
    _superres_option("--features", "The network's width.", type=int),
    _superres_option("--blocks", "Residual blocks.", type=int),
    _superres_option("--small-long-side", "The small pictures' long side: the scale the inputs are made at.", type=int),
    _superres_option(
        "--min-long-side", "A picture this long (and scale x --small-long-side) is a source of truth.", type=int
    ),
    _superres_option("--held-out", "Share of the large pictures never trained on: the figures' pictures.", type=float),
    _superres_option("--save-every", "Iterations between checkpoints (and validations).", type=int),
    _superres_option("--seed", "Seed of the held-out choice and the training.", type=int),
)


def _classify_option(name: str, help: str | None = None, **kwargs: Any) -> Callable[[Any], Any]:
    field = name.removeprefix("--").replace("-", "_")
    return click.option(name, default=CLASSIFY[field], show_default=True, help=help, **kwargs)


backbone = _classify_option(
    "--backbone",
    "torchvision's network: resnet18 (the default asked for), resnet50, densenet121, convnext_tiny, "
    "efficientnet_v2_s; its first layer takes the input's channels.",
    type=click.Choice(BACKBONES),
)
weights = _classify_option(
    "--weights",
    "'auto' (ImageNet's where torchvision's file is cached in TORCH_HOME or answers within "
    "IMAGENET_FETCH_TIMEOUT_SECONDS, else from scratch; the run says which), 'none' (from scratch), "
    "'imagenet' (required) or a state dict file.",
)
pipeline_classifier = options(
    click.option(
        "--classifier-epochs",
        type=int,
        help="Then train the classifier (its --backbone) for N epochs (on image+seg when all five folds train).",
    ),
    backbone,
    weights,
)


classify = options(
    click.option(
        "--input",
        "requested_input",
        type=click.Choice(["auto", *CLASSIFIER_INPUTS]),
        default="auto",
        show_default=True,
        help="The radiograph alone, or with nnU-Net's fracture probability map as a second channel "
        "(auto: image+seg where a run with every fold trained exists).",
    ),
    click.option("--compare", is_flag=True, help="Train image and image+seg side by side and report both."),
    click.option("--seg-run", help="The nnU-Net training run (r12) whose folds give the map [default: the newest]."),
    backbone,
    _classify_option("--input-size", "The square the network sees (at most the ingest's --size).", type=int),
    _classify_option("--epochs", type=int),
    _classify_option("--batch-size", type=int),
    _classify_option("--learning-rate", type=float),
    _classify_option("--weight-decay", "AdamW's weight decay.", type=float),
    _classify_option(
        "--augment", "Augmentation strength: 0 none, 1 flips, 10 degrees, 10% brightness/contrast.", type=float
    ),
    _classify_option("--patience", "Epochs without a better val AUC.", type=int),
    weights,
    _classify_option("--val-fraction", type=float),
    _classify_option("--test-fraction", type=float),
    _classify_option("--seed", "Seed of the split and the training.", type=int),
)
