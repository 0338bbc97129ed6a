"""The names and default values that the requests (shared/contract.py) and the command line share, as plain
values: `dispatch --help` shows them without loading pydantic. nnU-Net's own spellings are here once."""

from __future__ import annotations

from pathlib import Path

DEFAULT_DATASET_ID = 921
FOLDS = 5  # nnU-Net's cross-validation folds
ALL_FOLDS = f"0-{FOLDS - 1}"  # --folds's default, as users write it
CONFIGURATION = "2d"
PLANS = "nnUNetPlans"
# `dispatch preprocess --planner`: nnU-Net's experiment planner and the plans it writes. The residual-encoder
# presets are what nnU-Net now recommends; their GPU memory targets are nnU-Net's own (its planners' notes).
PLANNERS = {
    "default": ("ExperimentPlanner", PLANS),
    "resenc-m": ("nnUNetPlannerResEncM", "nnUNetResEncUNetMPlans"),
    "resenc-l": ("nnUNetPlannerResEncL", "nnUNetResEncUNetLPlans"),
}
TRAINER = "nnUNetTrainer"
JOBS_TRAINER = "nnUNetTrainerJobs"  # the project's trainer: epochs, iterations and checkpoints as options
SYNTHETIC = "synthetic"  # an ingest source: the ingest builds the demo's synthetic release itself
IMAGE, IMAGE_SEG = "image", "image+seg"  # the classifier's inputs: the radiograph, or it and nnU-Net's map
CLASSIFIER_INPUTS = (IMAGE, IMAGE_SEG)
SPLITS = ("stratified", "official")  # official: the release's Utilities/Fracture Split

NEGATIVES = ("all", "none")  # --negatives, besides a ratio to the positive cases
CONFLICTS = ("drop", "keep-fractured", "fail")  # what to do with a duplicate group whose labels disagree

# Each request's defaults, by field (docs/ingest.md and docs/training.md argue them)
RELEASE_FORMATS = ("auto", "fracatlas", "coco")  # auto: FracAtlas where its marks are, else COCO
INGEST = {
    "size": 512,  # the long side; the aspect ratio is kept
    "test_fraction": 0.2,
    "seed": 0,
    "split": "stratified",
    "negatives": "1",  # as many non-fractured cases as fractured ones in nnU-Net's dataset
    "conflicts": "drop",
}
# torchvision's classifier backbones the project offers (workers/classifier/model.py builds them).
BACKBONES = ("resnet18", "resnet50", "densenet121", "convnext_tiny", "efficientnet_v2_s")
# Each backbone as its paper names it: what job names, plot titles and reports say.
BACKBONE_NAMES = {
    "resnet18": "ResNet18",
    "resnet50": "ResNet50",
    "densenet121": "DenseNet121",
    "convnext_tiny": "ConvNeXt-Tiny",
    "efficientnet_v2_s": "EfficientNetV2-S",
}
CLASSIFY = {
    "backbone": "resnet18",  # the network the project was asked for
    "weights": "auto",  # auto (ImageNet's where its file is cached or can be fetched), none, imagenet, a file
    "input_size": 384,  # the square the classifier sees (at most the cache's size)
    "epochs": 30,
    "batch_size": 128,
    "learning_rate": 1e-3,
    "weight_decay": 1e-4,  # AdamW's
    "augment": 1.0,  # augmentation strength: 0 none, 1 the defaults (flips, 10 degrees, 10% brightness/contrast)
    "patience": 10,  # epochs without a better validation AUC
    "val_fraction": 0.15,
    "test_fraction": 0.15,
    "seed": 0,
}
SUPERRES = {
    "scales": "2",  # x2; "2,4" trains x4 beside it
    "iterations": 3000,
    "patch": 48,  # input pixels per side of a training crop
    "batch_size": 16,
    "learning_rate": 5e-4,
    "features": 32,  # the network's width (docs/superres.md argues the size)
    "blocks": 4,  # residual blocks
    "small_long_side": 454,  # the small pictures' long side: the inputs' scale
    "min_long_side": 1024,  # a picture at least this long is a large one, a source of truth
    "held_out": 0.2,  # of the large pictures, never trained on
    "save_every": 250,  # iterations between checkpoints (and validations)
    "seed": 0,
}
UPSCALE_METHODS = ("bicubic", "sr")  # --upscale: sr or sr:MODEL
SUPERRES_SCALES = (2, 4)  # what the super-resolution network upscales by
SWEEP = {"trials": 24, "sampler": "tpe", "pruner": "median", "warmup_epochs": 2, "epochs": 30}
SAMPLERS = ("tpe", "grid", "random")
PRUNERS = ("median", "halving", "none")
# torchvision's ImageNet weights for ResNet18, as torch.hub caches them (TORCH_HOME/hub/checkpoints)
IMAGENET_FILE = "resnet18-f37072fd.pth"

# Where predictions go back to the annotators (--annotations), and Label Studio's own file serving
# (LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED): a task's image is this + its path below the document root.
ANNOTATION_TOOLS = ("cvat", "label-studio")
LABEL_STUDIO_FILES = "/data/local-files/?d="
# What `dispatch rank` orders the pictures by: the folds' disagreement, the classifier's doubt, both, or none.
RANK_BY = ("both", "folds", "classifier", "random")

# What `dispatch predict` takes: pictures as the release has them, or nnU-Net's 2D cases.
PICTURE_SUFFIXES = (".jpg", ".jpeg", ".png")
NIFTI_SUFFIXES = (".nii", ".nii.gz")


DICOM_SUFFIX = ".dcm"
DICOM_MARKER_END = 132  # PS3.10: a 128-byte preamble, then 'DICM'


def is_radiograph_file(path: Path) -> bool:
    """A picture, a NIfTI case or a DICOM file (by its suffix, or by its 'DICM' marker where it has none)."""
    name = path.name.lower()
    if name.endswith((*PICTURE_SUFFIXES, *NIFTI_SUFFIXES, DICOM_SUFFIX)):
        return True
    return "." not in name and has_dicom_marker(path)


def is_dicom_file(path: Path) -> bool:
    """A DICOM file by its suffix, or by its 'DICM' marker whatever its name."""
    return path.name.lower().endswith(DICOM_SUFFIX) or has_dicom_marker(path)


def has_dicom_marker(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(DICOM_MARKER_END)[-4:] == b"DICM"
    except OSError:
        return False


# Celery prefers these to the broker and backend an app names; the stack's are BROKER_URL and RESULT_BACKEND.
IGNORED_CELERY_VARIABLES = (
    "CELERY_BROKER_URL",
    "CELERY_BROKER_READ_URL",
    "CELERY_BROKER_WRITE_URL",
    "CELERY_RESULT_BACKEND",
)
