"""The contract between the dispatcher and the workers: what each kind of run asks for, typed, with its
defaults and its bounds defined here once.

`dispatch` builds a request from its options (`Request.build`: a value a worker would refuse is refused
before the run exists, naming the option), stores `request.params()` as the run's parameters, and a worker
parses them once (`Request.parse`). nnU-Net's own names (configuration `2d`, plans `nnUNetPlans`, the
trainers) are spelled here and nowhere else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.defaults import (
    ANNOTATION_TOOLS,
    BACKBONES,
    CLASSIFY,
    CONFIGURATION,
    CONFLICTS,
    DEFAULT_DATASET_ID,
    FOLDS,
    IMAGE,
    IMAGE_SEG,
    INGEST,
    JOBS_TRAINER,
    LABEL_STUDIO_FILES,
    NEGATIVES,
    PLANNERS,
    PLANS,
    PRUNERS,
    RANK_BY,
    RELEASE_FORMATS,
    SAMPLERS,
    SUPERRES,
    SUPERRES_SCALES,
    SWEEP,
    TRAINER,
    UPSCALE_METHODS,
)
from shared.errors import InputError
from shared.layout import DataRoot, dataset_name, existing_datasets, find_dataset, training_name
from shared.search_space import SpaceError, choices, grid, normalise

DatasetId = Annotated[int, Field(ge=1, le=999)]
Fraction = Annotated[float, Field(gt=0, lt=1)]
Positive = Annotated[int, Field(ge=1)]


class BadOption(InputError):
    """A value the user gave that a request refuses; `option` names the command-line option."""

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


def option_name(field: str) -> str:
    return "--" + field.replace("_", "-")


class Request(BaseModel):
    # Frozen: what a run asked for never changes. Extra keys are ignored: a pipeline run's parameters hold
    # every stage's request, and each job parses its own part.
    model_config = ConfigDict(frozen=True, extra="ignore")

    @classmethod
    def build(cls, **values: Any) -> Self:
        """The dispatcher's side: a refused value becomes a BadOption that names its option."""
        try:
            return cls(**values)
        except ValidationError as error:
            first = error.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else ""
            option = option_name(field) if field else None
            given = f"{first['input']!r}: " if field and not isinstance(first["input"], dict) else ""
            raise BadOption(f"{given}{first['msg']}", option) from None

    @classmethod
    def parse(cls, params: dict[str, Any]) -> Self:
        """The worker's side: a run's stored parameters."""
        return cls.model_validate(params)

    def params(self) -> dict[str, Any]:
        """What the run's row stores."""
        return self.model_dump(mode="json")


PictureSize = Annotated[int, Field(ge=32, le=2048)]


class PreviousRound(BaseModel):
    """--previous rN: what the last round left, found by the dispatcher (workers/ingest/previous_round.py)."""

    model_config = ConfigDict(frozen=True)
    run: int
    manifest: str | None = None  # the last round's dataset's manifest.csv: each picture's side and hashes
    predictions: str | None = None  # a predict run's folder: its masks were the pre-annotations


class IngestRequest(Request):
    source: str  # the release's folder or export zip, or SYNTHETIC
    format: Literal[RELEASE_FORMATS] = "auto"  # type: ignore[valid-type]
    coco: str | None = None  # the COCO file, where the folder holds several .json files or it lies elsewhere
    images: str | None = None  # the folder the COCO file's file_names are relative to, where it is not found
    categories: list[str] | None = None  # a COCO release's labels 1..K, in this order (default: all with masks)
    positive: list[str] | None = None  # the categories that make a picture positive (default: the labels')
    labels: str | None = None  # a CSV of file_name, label: the image-level labels
    groups: str | None = None  # a CSV of file_name, group (a patient or study id)
    dataset_id: DatasetId = DEFAULT_DATASET_ID
    size: PictureSize = INGEST["size"]  # the long side of every picture; the aspect ratio is kept
    square: PictureSize | None = None  # the notebook's layout instead: every picture squashed to square x square
    test_fraction: Fraction = INGEST["test_fraction"]
    seed: int = INGEST["seed"]
    split: Literal["stratified", "official"] = INGEST["split"]
    negatives: str = INGEST["negatives"]  # non-fractured cases in nnU-Net's dataset: all, none or a ratio
    conflicts: Literal[CONFLICTS] = INGEST["conflicts"]  # type: ignore[valid-type]
    upscale: str = "bicubic"  # pictures below the working size: bicubic, or sr / sr:MODEL (a super-resolution run)
    upscale_models: dict[int, str] = Field(default_factory=dict)  # sr: the dispatcher's choice, scale -> weights
    overwrite: bool = False
    previous: PreviousRound | None = None  # --previous: the last round's sides kept, its pre-annotations compared

    @model_validator(mode="after")
    def _previous_split(self) -> Self:
        if self.previous is not None and self.split == "official":
            raise ValueError("--previous keeps the last round's sides; --split official takes the release's own")
        return self

    @field_validator("upscale", mode="before")
    @classmethod
    def _upscale(cls, value: Any) -> str:
        text = str(value).strip()
        method = text.split(":", 1)[0].lower()
        if method not in UPSCALE_METHODS or (method == "bicubic" and text.lower() != "bicubic"):
            raise ValueError("write bicubic, sr (the newest super-resolution run) or sr:MODEL (sr:r12, sr:NAME/2)")
        return "sr" + text[2:] if method == "sr" else "bicubic"

    @field_validator("categories", "positive", mode="before")
    @classmethod
    def _names(cls, value: Any) -> list[str] | None:
        """'A,B' (the command line) or a list: names in order, blanks dropped; an empty list is none."""
        names = value.split(",") if isinstance(value, str) else value
        if names is None:
            return None
        cleaned = [str(name).strip() for name in names if str(name).strip()]
        if len(set(cleaned)) != len(cleaned):
            raise ValueError("name each category once")
        return cleaned or None

    @field_validator("negatives", mode="before")
    @classmethod
    def _negatives(cls, value: Any) -> str:
        text = str(value).strip().lower()
        if text in NEGATIVES:
            return text
        try:
            ratio = float(text)
        except ValueError:
            ratio = -1.0
        if not 0 <= ratio <= 1000:
            raise ValueError(f"write {', '.join(NEGATIVES)} or a ratio to the fractured cases (0.5, 1, 2)")
        return "none" if ratio == 0 else f"{ratio:g}"

    @property
    def dataset_name(self) -> str:
        return dataset_name(self.dataset_id)

    @property
    def working_size(self) -> int:
        """The long side of every picture (and the side of the classification cache's squares)."""
        return self.square or self.size

    def negatives_wanted(self, positives: int, available: int) -> int:
        """How many non-fractured pictures go into nnU-Net's dataset beside `positives` fractured ones."""
        if self.negatives == "all":
            return available
        if self.negatives == "none":
            return 0
        return min(available, round(float(self.negatives) * positives))


class Experiment(Request):
    """One nnU-Net training setup: dataset, configuration, trainer and plans."""

    dataset_id: DatasetId = DEFAULT_DATASET_ID
    configuration: str = CONFIGURATION
    trainer: str = TRAINER
    plans: str = PLANS
    planner: Literal[tuple(PLANNERS)] | None = None  # type: ignore[valid-type]  # preprocessing: names the plans

    @model_validator(mode="before")
    @classmethod
    def _plans_of_the_planner(cls, values: Any) -> Any:
        """A residual-encoder --planner names the plans it writes; --plans, where given too, must be those.
        No plans named: nnU-Net's default plans (`dispatch train` first looks for the dataset's newest)."""
        if not isinstance(values, dict):
            return values
        planner, plans = values.get("planner"), values.get("plans")
        if planner in PLANNERS and planner != "default":
            wanted = PLANNERS[planner][1]
            if plans not in (None, wanted):
                raise BadOption(f"{plans!r} is not the plans --planner {planner} makes ({wanted})", "--plans")
            return {**values, "plans": wanted}
        return {key: value for key, value in values.items() if not (key == "plans" and value is None)}

    def raw(self, layout: DataRoot) -> Path:
        try:
            return find_dataset(layout.nnunet_raw, self.dataset_id)
        except InputError:
            raise InputError(
                f"dataset {self.dataset_id} is not in {layout.nnunet_raw}; run `dispatch ingest` first"
            ) from None

    def preprocessed(self, layout: DataRoot) -> Path:
        try:
            folder = find_dataset(layout.nnunet_preprocessed, self.dataset_id)
        except InputError:
            folder = None
        if folder is None or not (folder / f"{self.plans}.json").exists():
            raise InputError(
                f"dataset {self.dataset_id} has no {self.plans}.json in {layout.nnunet_preprocessed}; "
                f"run `dispatch preprocess --dataset-id {self.dataset_id}` first"
            )
        return folder

    def results(self, layout: DataRoot) -> Path:
        # An imported model has its results alone; before the first fold, the name is the preprocessed one's.
        installed = existing_datasets(layout.nnunet_results, self.dataset_id)
        name = installed[0].name if installed else self.preprocessed(layout).name
        return layout.nnunet_results / name / training_name(self.trainer, self.plans, self.configuration)

    def fold_folder(self, layout: DataRoot, fold: int | str) -> Path:
        return self.results(layout) / f"fold_{fold}"


class PreprocessRequest(Experiment):
    seed: int = 0  # of the 5-fold split
    # --plans-from: another dataset's plans moved here, as nnU-Net has it for fine-tuning across datasets
    plans_from_dataset: DatasetId | None = None
    plans_from: str | None = None  # that dataset's plans identifier

    @model_validator(mode="before")
    @classmethod
    def _moved_plans(cls, values: Any) -> Any:
        """Moved plans get a name of their own (nnU-Net advises against reusing the source's)."""
        if not isinstance(values, dict) or values.get("plans_from_dataset") is None:
            return values
        if values.get("planner") not in (None, "default"):
            raise BadOption("--plans-from takes another dataset's plans; give no --planner with it", "--planner")
        moved = f"{values['plans_from']}_from{values['plans_from_dataset']}"
        return {**values, "plans": moved}


def parse_folds(text: str) -> list[int]:
    """`--folds` as users write it: `0-4`, `0,2`, `3` or `all` (the five cross-validation folds)."""
    if text.strip().lower() == "all":
        return list(range(FOLDS))
    folds: set[int] = set()
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            folds.update(range(int(low), int(high or low) + 1))
    except ValueError:
        raise BadOption(f"{text!r}: write folds as 0-4, 0,2 or all", "--folds") from None
    if not folds or min(folds) < 0 or max(folds) >= FOLDS:
        raise BadOption(f"{text!r}: folds run from 0 to {FOLDS - 1}", "--folds")
    return sorted(folds)


def covers_every_fold(folds: list[int]) -> bool:
    """Whether `folds` are all of nnU-Net's: then they give an out-of-fold map of every training case."""
    return set(folds) == set(range(FOLDS))


JOBS_TRAINER_OPTIONS = ("epochs", "iterations", "save_every")


class TrainRequest(Experiment):
    folds: list[int] = Field(default_factory=lambda: list(range(FOLDS)))
    pretrained: str | None = None  # a fold checkpoint each fold starts from (nnU-Net's -pretrained_weights)
    epochs: Positive | None = None  # these three through JOBS_TRAINER
    iterations: Positive | None = None
    save_every: Positive | None = None
    val_iterations: Positive | None = None

    @model_validator(mode="before")
    @classmethod
    def _trainer_for_options(cls, values: Any) -> Any:
        """No trainer named: nnU-Net's own, or the project's where an option needs it; a named trainer
        other than the project's cannot take those options."""
        if not isinstance(values, dict):
            return values
        asked = [name for name in JOBS_TRAINER_OPTIONS if values.get(name)]
        trainer = values.get("trainer") or (JOBS_TRAINER if asked else TRAINER)
        if asked and trainer != JOBS_TRAINER:
            flags = ", ".join(option_name(name) for name in asked)
            raise BadOption(f"{flags} work through {JOBS_TRAINER}, not {trainer}", "--trainer")
        return {**values, "trainer": trainer}

    @field_validator("folds", mode="before")
    @classmethod
    def _folds(cls, folds: Any) -> Any:
        if isinstance(folds, str):
            return parse_folds(folds)
        if isinstance(folds, list) and any(not 0 <= int(fold) < FOLDS for fold in folds):
            raise ValueError(f"folds run from 0 to {FOLDS - 1}")
        return folds

    @property
    def experiment(self) -> Experiment:
        return Experiment.parse(self.params())


class PipelineRequest(IngestRequest, TrainRequest):
    """Ingest, preprocess, train and evaluate; then the classifier where `classifier_epochs` is given."""

    classifier_epochs: Positive | None = None
    backbone: Literal[BACKBONES] = CLASSIFY["backbone"]  # type: ignore[valid-type]
    weights: str = CLASSIFY["weights"]


class ChannelRequest(Request):
    """The segmentation channel of a classifier run: nnU-Net's map of every cached image."""

    dataset_id: DatasetId = DEFAULT_DATASET_ID
    seg_run: int | None = None  # None: the job's own run (a pipeline's folds)


class ClassifyRequest(Request):
    dataset_id: DatasetId = DEFAULT_DATASET_ID
    input: Literal["image", "image+seg"] = IMAGE
    seg_run: int | None = None  # the training run whose folds give the map; None: the job's own run
    backbone: Literal[BACKBONES] = CLASSIFY["backbone"]  # type: ignore[valid-type]
    weights: str = CLASSIFY["weights"]
    input_size: int = Field(CLASSIFY["input_size"], ge=32, le=1024)  # capped at the cache's size
    epochs: Positive = CLASSIFY["epochs"]
    batch_size: int = Field(CLASSIFY["batch_size"], ge=2)
    learning_rate: float = Field(CLASSIFY["learning_rate"], gt=0)
    weight_decay: float = Field(CLASSIFY["weight_decay"], ge=0)
    augment: float = Field(CLASSIFY["augment"], ge=0, le=3)
    patience: Positive = CLASSIFY["patience"]
    val_fraction: Fraction = CLASSIFY["val_fraction"]
    test_fraction: Fraction = CLASSIFY["test_fraction"]
    seed: int = CLASSIFY["seed"]

    @model_validator(mode="after")
    def _leaves_training_images(self) -> Self:
        if self.val_fraction + self.test_fraction >= 1:
            raise BadOption(
                f"{self.val_fraction} + {self.test_fraction} leaves no images to train on; keep the two below 1 "
                "together",
                "--val-fraction/--test-fraction",
            )
        return self

    @classmethod
    def for_job(cls, run_params: dict[str, Any], job_params: dict[str, Any]) -> Self:
        """The job's own parameters win: a pipeline run's `epochs` are nnU-Net's, its classifier jobs carry
        their own."""
        merged = {**run_params, **job_params}
        return cls.parse({key: value for key, value in merged.items() if value is not None})

    def job_params(self) -> dict[str, Any]:
        """What a pipeline's classifier jobs carry: everything but the input and the map's run, which each
        job and the pipeline itself give."""
        return {key: value for key, value in self.params().items() if key not in ("input", "seg_run")}


def check_classifier_value(key: str, value: Any) -> None:
    """ValueError where `dispatch classify` would refuse `value` for `key` (a search space's entries)."""
    try:
        ClassifyRequest.model_validate({key: value})
    except ValidationError as error:
        raise ValueError(error.errors()[0]["msg"]) from None


class SweepRequest(Request):
    """A search over the classifier's settings: `trials` classifier trainings, each a job, in one Optuna
    study; the settings the space leaves out are the sweep's own (the split's, the epochs) or the
    classifier's defaults."""

    dataset_id: DatasetId = DEFAULT_DATASET_ID
    space: dict[str, dict[str, Any]]
    trials: int = Field(SWEEP["trials"], ge=1, le=1000)
    sampler: Literal[SAMPLERS] = SWEEP["sampler"]  # type: ignore[valid-type]
    pruner: Literal[PRUNERS] = SWEEP["pruner"]  # type: ignore[valid-type]
    warmup_epochs: int = Field(SWEEP["warmup_epochs"], ge=0)  # no trial is pruned before this many epochs
    prune_below: float | None = Field(None, ge=0, le=1)  # also prune a trial whose val AUC is below this
    epochs: Positive = SWEEP["epochs"]
    patience: Positive = CLASSIFY["patience"]
    val_fraction: Fraction = CLASSIFY["val_fraction"]
    test_fraction: Fraction = CLASSIFY["test_fraction"]
    seed: int = CLASSIFY["seed"]
    seg_run: int | None = None  # the training run whose folds give image+seg's map

    @model_validator(mode="before")
    @classmethod
    def _space_and_grid(cls, values: Any) -> Any:
        if not isinstance(values, dict) or "space" not in values:
            return values
        try:
            space = normalise(values["space"], check_classifier_value)
            points = len(grid(space)) if values.get("sampler") == "grid" else None
        except SpaceError as error:
            raise BadOption(str(error), "--space") from None
        trials = values.get("trials")
        if points is not None and trials not in (None, points):
            raise BadOption(
                f"{trials}: the grid has {points} points; give --trials {points} or leave it out", "--trials"
            )
        return {**values, "space": space, "trials": trials or points or SWEEP["trials"]}

    @model_validator(mode="after")
    def _map_for_image_seg(self) -> Self:
        if IMAGE_SEG in (choices(self.space, "input") or []) and self.seg_run is None:
            raise BadOption("image+seg in the space needs the nnU-Net run whose folds give the map", "--seg-run")
        ClassifyRequest.build(val_fraction=self.val_fraction, test_fraction=self.test_fraction)
        return self

    @property
    def grid(self) -> list[dict[str, Any]]:
        return grid(self.space)

    def trial_request(self, params: dict[str, Any]) -> ClassifyRequest:
        """The classifier request of one trial: the sweep's settings and the trial's sampled ones."""
        own = ("dataset_id", "epochs", "patience", "val_fraction", "test_fraction", "seed", "seg_run")
        return ClassifyRequest.parse({**{key: getattr(self, key) for key in own}, **params})


def parse_scales(value: Any) -> list[int]:
    """`--scales` as users write it: `2`, `4` or `2,4`."""
    parts = value if isinstance(value, list) else str(value).split(",")
    try:
        scales = sorted({int(part) for part in parts})
    except ValueError:
        raise ValueError("write the scales as 2, 4 or 2,4") from None
    if not scales or any(scale not in SUPERRES_SCALES for scale in scales):
        raise ValueError("the network upscales by 2 or 4: write 2, 4 or 2,4")
    return scales


class SuperResRequest(Request):
    """Super-resolution networks learned from the release's large radiographs, one job per scale
    (docs/superres.md)."""

    source: str  # the unpacked release's folder
    dataset_id: DatasetId = DEFAULT_DATASET_ID  # names the registered model
    scales: list[int] = Field(default_factory=lambda: parse_scales(SUPERRES["scales"]))
    iterations: Positive = SUPERRES["iterations"]
    patch: int = Field(SUPERRES["patch"], ge=8, le=256)
    batch_size: Positive = SUPERRES["batch_size"]
    learning_rate: float = Field(SUPERRES["learning_rate"], gt=0)
    features: int = Field(SUPERRES["features"], ge=4, le=256)
    blocks: int = Field(SUPERRES["blocks"], ge=0, le=64)
    small_long_side: int = Field(SUPERRES["small_long_side"], ge=32, le=2048)
    min_long_side: int = Field(SUPERRES["min_long_side"], ge=64)  # and at least scale x small_long_side
    held_out: Fraction = SUPERRES["held_out"]
    save_every: Positive = SUPERRES["save_every"]
    seed: int = SUPERRES["seed"]

    @field_validator("scales", mode="before")
    @classmethod
    def _scales(cls, value: Any) -> list[int]:
        return parse_scales(value)


class PacsSource(BaseModel):
    """A study in a PACS: its DICOMweb URL and the private request file that holds its UIDs (never the UIDs,
    which are patient data; shared/dicomweb.py)."""

    model_config = ConfigDict(frozen=True)
    url: str
    request: str  # the file's name under the data root's private/pacs-requests/
    store: bool = False  # send the SEGs and reports back to the study (STOW-RS)
    keep_local: bool = False  # with store: keep the local copies once the PACS took them


class ExportRequest(Request):
    """A trained model as a bundle another site installs: a training run's folds and, where given, a
    classifier whose map (for image+seg) came from those folds."""

    seg_run: int
    dataset_id: DatasetId
    classifier_run: int | None = None
    input: Literal["image", "image+seg"] | None = None
    checkpoint: str | None = None
    out: str  # the bundle's .zip, written whole or not at all


class ImportRequest(Experiment):
    """A bundle from another site (`dispatch import`): its folds installed here under `dataset_id`, its
    classifier kept in the data root; the run then serves `dispatch predict` as a training run and a
    classifier run do."""

    bundle: str  # the .zip, checked whole by the dispatcher and again by the worker
    bundle_dataset_id: DatasetId  # the id the folds were trained under
    folds: list[int]
    classifier_input: Literal["image", "image+seg"] | None = None  # None: the bundle has no classifier


class EvaluateRequest(Request):
    """An external cohort scored by a trained model (`dispatch evaluate`): every picture of it a test case,
    predicted by the folds of `seg_run` and the classifier of `classifier_run`, at the thresholds that
    classifier's validation split chose."""

    cohort: IngestRequest  # read as the ingest reads a release; its categories are the cohort's names
    category_map: dict[str, str] = Field(default_factory=dict)  # a cohort category -> the model's, where renamed
    strata: str | None = None  # a CSV of file_name and further columns (site, device) to report by
    by: list[str] = Field(default_factory=list)  # category, region, or a column of `strata`
    seg_run: int
    classifier_run: int
    input: Literal["image", "image+seg"]
    checkpoint: str
    dataset_id: DatasetId  # the model's
    results: str | None = None  # a Markdown file (docs/results.md) the figures are appended to

    @model_validator(mode="after")
    def _strata_named(self) -> Self:
        built_in = ("category", "region")
        if any(name not in built_in for name in self.by) and self.strata is None:
            unknown = next(name for name in self.by if name not in built_in)
            raise BadOption(f"{unknown!r} is neither category nor region: name its CSV with --strata", "--by")
        return self


class PredictRequest(Request):
    files: list[str] = Field(default_factory=list)  # or, with `pacs`, the study's radiographs
    pacs: PacsSource | None = None
    out: str | None = None  # default: the run's folder
    classifier_run: int
    input: Literal["image", "image+seg"]
    checkpoint: str
    seg_run: int  # the training run whose folds give the masks (and the map, for image+seg)
    dataset_id: DatasetId
    probabilities: bool = False  # DICOM inputs: a FRACTIONAL SEG (each category's probability), not BINARY
    annotations: Literal[ANNOTATION_TOOLS] | None = None  # type: ignore[valid-type]  # also as the tool imports them
    image_url: str = LABEL_STUDIO_FILES  # Label Studio: a task's image is this + the picture's file name
    store_to: str | None = None  # files: a PACS's DICOMweb URL that the DICOM pictures' SEGs and reports go to

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if bool(self.files) == (self.pacs is not None):
            raise ValueError("give radiograph files or a PACS study (--pacs with --study), one of the two")
        if self.store_to and self.pacs is not None:
            raise ValueError("--store-to goes with files; a PACS study goes back with --store")
        return self


class RankRequest(Request):
    """`dispatch rank`: unlabelled pictures ordered by the model's doubt (workers/predict/rank.py)."""

    files: list[str]
    out: str | None = None  # default: the run's folder
    classifier_run: int
    input: Literal["image", "image+seg"]
    checkpoint: str
    seg_run: int
    dataset_id: DatasetId
    top: Positive = 20  # the pictures the contact sheet and the annotation files hold
    by: Literal[RANK_BY] = "both"  # type: ignore[valid-type]
    seed: int = 0  # --by random's
    annotations: Literal[ANNOTATION_TOOLS] | None = None  # type: ignore[valid-type]
    image_url: str = LABEL_STUDIO_FILES
