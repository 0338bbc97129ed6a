"""The user's inputs, checked on the dispatcher's host before a run exists: the release folder, the
radiographs to predict (or a PACS study), the output folder, a weights file and the classifier's cache."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from shared.defaults import IMAGE_SEG, IMAGENET_FILE, SYNTHETIC, is_dicom_file, is_radiograph_file

if TYPE_CHECKING:
    from shared.contract import PacsSource
    from shared.read_model import Classifier, Segmentation


def release_folder(source: str) -> str:
    """A release folder or export zip as its absolute path, or SYNTHETIC (the ingest builds the demo's release)."""
    if source == SYNTHETIC:
        return source
    folder = Path(source).expanduser()
    if not folder.is_dir() and not (folder.is_file() and folder.suffix.lower() == ".zip"):
        raise click.BadParameter(
            f"{source} is neither a folder nor a .zip; pass the release (a FracAtlas archive, or a COCO export)",
            param_hint="--source",
        )
    return str(folder.resolve())


RELEASE_FILES = {"coco": "a file", "images": "a folder", "labels": "a file", "groups": "a file"}


def release_paths(params: dict[str, Any]) -> dict[str, Any]:
    """The ingest's options with every path the worker will read made absolute, each checked here first;
    --source defaults to the folder of --coco."""
    for option, kind in RELEASE_FILES.items():
        if params.get(option) is not None:
            path = Path(params[option]).expanduser()
            if not (path.is_dir() if kind == "a folder" else path.is_file()):
                raise click.BadParameter(f"{path} is not {kind}", param_hint=f"--{option}")
            params[option] = str(path.resolve())
    if params.get("source") is None:
        if params.get("coco") is None:
            raise click.BadParameter("pass the release (or --coco FILE)", param_hint="--source")
        params["source"] = str(Path(params["coco"]).parent)
    params["source"] = release_folder(params["source"])
    return params


def plans_source(ref: str) -> dict[str, Any]:
    """--plans-from r12: the dataset and plans of that run (a preprocess, train or pipeline run)."""
    from services.dispatcher.refs import run_number
    from shared.contract import Experiment
    from shared.read_model import get_run
    from shared.settings import get_settings

    experiment = Experiment.parse(get_run(run_number(ref, "--plans-from"))["params"])
    experiment.preprocessed(get_settings().layout)  # its plans file, or an error that says what to run
    return {"plans_from_dataset": experiment.dataset_id, "plans_from": experiment.plans}


def previous_round(ref: str) -> dict[str, Any]:
    """--previous rN: the last round's dataset manifest (from an ingest run, a training run, or the training
    run whose folds a predict run used) and, for a `predict --annotations` run, its folder of masks."""
    from services.dispatcher.refs import run_number
    from shared.layout import existing_datasets
    from shared.read_model import SEGMENTATION_RUN_KINDS, get_run
    from shared.settings import get_settings

    run_id = run_number(ref, "--previous")
    assert run_id is not None
    run = get_run(run_id)
    if run["state"] != "succeeded" or run["kind"] not in ("ingest", "predict", *SEGMENTATION_RUN_KINDS):
        raise click.BadParameter(
            f"r{run_id} is a {run['state']} {run['kind']} run; give the last round's predict --annotations run "
            "(or its ingest or training run) that succeeded",
            param_hint="--previous",
        )
    predictions = None
    source = run
    if run["kind"] == "predict":
        if not run["params"].get("annotations"):
            raise click.BadParameter(
                f"r{run_id} predicted without --annotations: nothing of it went to the annotators",
                param_hint="--previous",
            )
        predictions = run["artifacts"]["out"]
        if not (Path(predictions) / "predictions.csv").is_file():
            raise click.BadParameter(f"{predictions}/predictions.csv is gone", param_hint="--previous")
        source = get_run(int(run["params"]["seg_run"]))
    found = existing_datasets(get_settings().layout.nnunet_raw, int(source["params"]["dataset_id"]))
    manifest = found[0] / "manifest.csv" if found else None
    return {
        "run": run_id,
        "manifest": str(manifest) if manifest and manifest.is_file() else None,
        "predictions": predictions,
    }


def pretrained_checkpoint(ref: str) -> str:
    """--pretrained: r12 (its first trained fold), r12:3 (fold 3) or a checkpoint file, as an absolute path."""
    from shared.contract import Experiment
    from shared.read_model import get_run, trained_folds
    from shared.settings import get_settings

    path = Path(ref).expanduser()
    if path.is_file():
        return str(path.resolve())
    run, _, fold = ref.partition(":")
    if not run.lower().removeprefix("r").isdigit() or not (fold.isdigit() or not fold):
        raise click.BadParameter(
            f"{ref} is neither a checkpoint file nor a run (r12, r12:3)", param_hint="--pretrained"
        )
    run_id = int(run.lower().removeprefix("r"))
    experiment, folds = Experiment.parse(get_run(run_id)["params"]), trained_folds(run_id)
    chosen = int(fold) if fold else (folds[0] if folds else None)
    if chosen is None or chosen not in folds:
        which = f"fold {chosen}" if chosen is not None else "fold"
        raise click.BadParameter(
            f"run r{run_id} has no trained {which} (its folds: {folds})", param_hint="--pretrained"
        )
    checkpoint = experiment.fold_folder(get_settings().layout, chosen) / "checkpoint_final.pth"
    if not checkpoint.is_file():
        raise click.BadParameter(f"{checkpoint} is gone; train run r{run_id} again", param_hint="--pretrained")
    return str(checkpoint)


def newest_plans(dataset_id: int) -> str | None:
    """`dispatch train` without --plans: the plans of the dataset's newest preprocessing (a preprocess or
    pipeline run that succeeded), so that the folds train with what its --planner made."""
    from shared.read_model import latest_succeeded_run

    newest = latest_succeeded_run(("preprocess", "pipeline"), dataset_id)
    return newest["params"].get("plans") if newest else None


def weights_file(weights: str, option: str = "--weights") -> str:
    """'auto', 'none', 'imagenet', or a state dict file (named by its absolute path: a worker reads it)."""
    if weights in ("auto", "none", "imagenet"):
        return weights
    path = Path(weights).expanduser()
    if not path.is_file():
        raise click.BadParameter(f"{path} is not a file (a state dict saved with torch.save)", param_hint=option)
    return str(path.resolve())


def imagenet_cached() -> bool:
    """torchvision's ImageNet weights for ResNet18 in torch.hub's cache (TORCH_HOME), usable offline."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch"
    )
    return (Path(home) / "hub" / "checkpoints" / IMAGENET_FILE).is_file()


def classification_cache(dataset_id: int) -> Path:
    """The ingest's cache of every image for the classifier; refused where the dataset was never ingested."""
    from shared.layout import CACHE_IMAGES
    from shared.settings import get_settings

    cache = get_settings().layout.classification_cache(dataset_id)
    if not (cache / CACHE_IMAGES).exists():
        raise click.ClickException(
            f"no classification cache at {cache}; run `dispatch ingest --dataset-id {dataset_id}` first"
        )
    return cache


def radiograph_files(paths: tuple[Path, ...]) -> list[str]:
    files: list[Path] = []
    for path in paths:
        path = path.expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and is_radiograph_file(p))
            if not found:
                raise click.BadParameter(f"{path} holds no JPEG, PNG, DICOM or NIfTI file")
            files += found
        elif path.resolve().is_file():
            files.append(path)
        elif path.exists():
            raise click.BadParameter(f"{path} is not a regular file (a FIFO, device or socket); it is not read")
        else:
            raise click.BadParameter(f"{path} does not exist")
    return [str(path.resolve()) for path in files]


def one_source(
    paths: tuple[Path, ...], pacs: str | None, study: str | None, series: str | None, store: bool, keep_local: bool
) -> None:
    """predict's inputs: radiograph files, or a PACS study (--pacs with --study), one of the two."""
    if paths and pacs:
        raise click.BadParameter("predict files or a PACS study, not both", param_hint="--pacs")
    if not paths and not pacs:
        raise click.UsageError("give the radiographs (files or folders), or a PACS study with --pacs URL --study UID")
    if pacs and not study:
        raise click.BadParameter("--pacs needs the study to predict: --study UID", param_hint="--study")
    for given, option in ((study, "--study"), (series, "--series"), (store, "--store")):
        if given and not pacs:
            raise click.BadParameter(f"{option} goes with --pacs URL", param_hint=option)
    if keep_local and not store:
        raise click.BadParameter(
            "--keep-local goes with --store (without --store the local copies are kept)", param_hint="--keep-local"
        )
    if pacs:
        from shared.dicomweb import checked_url

        checked_url(pacs)


def store_to(url: str, files: list[str]) -> str:
    """--store-to: files to predict among which DICOM radiographs are, and a PACS that answers and takes the
    login now (a QIDO-RS search for one study), before a run exists."""
    from shared.dicomweb import answered, checked_url, connect
    from shared.settings import get_settings

    if not files:
        raise click.BadParameter(
            "--store-to goes with files; a PACS study goes back with --store", param_hint="--store-to"
        )
    if not any(is_dicom_file(Path(name)) for name in files):
        raise click.BadParameter(
            "--store-to sends DICOM radiographs' SEGs and reports, and none of the files is DICOM",
            param_hint="--store-to",
        )
    url = checked_url(url)
    client = connect(url, get_settings())
    answered(url, lambda: client.search_for_studies(limit=1))
    return url


def pacs_study(url: str, study: str, series: str | None, store: bool, keep_local: bool) -> PacsSource:
    """The study, checked at the PACS now (it answers, takes the login, holds a radiograph there), and its
    UIDs handed to the worker in a private request file: the run stores only the file's name."""
    from shared.contract import PacsSource
    from shared.dicomweb import StudyRequest, checked_url, connect, radiograph_series, write_request
    from shared.settings import get_settings

    settings, url = get_settings(), checked_url(url)
    wanted = StudyRequest(study, series)
    radiograph_series(connect(url, settings), url, wanted)
    request = write_request(settings.layout.private_dir, wanted)
    return PacsSource(url=url, request=request, store=store, keep_local=keep_local)


def new_file(path: Path, suffix: str) -> Path:
    """--out for a file the worker writes: absolute, with its suffix, not there yet, in a writable folder."""
    path = path.expanduser().resolve()
    if path.suffix != suffix:
        raise click.BadParameter(f"{path} does not end in {suffix}", param_hint="--out")
    if path.exists():
        raise click.BadParameter(f"{path} exists already; it is not replaced: choose another name", param_hint="--out")
    writable_folder(path.parent)
    return path


def dataset_of(run_id: int) -> int:
    """The dataset a run trained on."""
    from shared.read_model import get_run

    return int(get_run(run_id)["params"]["dataset_id"])


def writable_folder(out: Path) -> Path:
    """--out as the worker will use it: an existing writable folder, or a new one in a writable parent."""
    out = out.expanduser().resolve()
    existing = next(folder for folder in (out, *out.parents) if folder.exists())
    if not existing.is_dir():
        raise click.BadParameter(f"{existing} is not a folder", param_hint="--out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise click.BadParameter(f"{existing} is not writable by this user", param_hint="--out")
    return out


def upscale_models(spec: str) -> dict[int, str]:
    """--upscale's networks by scale: none for bicubic; for sr, the newest sr-train run's, sr:r12 a run's,
    sr:NAME/VERSION or sr:NAME@ALIAS a registered version's run."""
    from shared.contract import BadOption
    from shared.read_model import superres_models

    if spec == "bicubic":
        return {}
    _, _, named = spec.partition(":")
    if not named:
        return superres_models(None)
    if named.lstrip("rR").isdigit():
        return superres_models(int(named.lstrip("rR")))
    from shared.model_registry import find_version

    try:
        return superres_models(find_version(named).run_id)
    except BadOption as error:
        raise BadOption(str(error), "--upscale") from None


def chosen_classifier(model: str | None, classifier_ref: str | None) -> Classifier:
    """The classifier a prediction or an evaluation uses: a registered version (--model), a run
    (--classifier), else the newest that finished."""
    from services.dispatcher.refs import run_number
    from shared.read_model import classifier_for_prediction

    if model and classifier_ref:
        raise click.BadParameter("name the classifier by its run or by its model, not both", param_hint="--model")
    if model:
        from shared.model_registry import find_version

        version = find_version(model)
        return classifier_for_prediction(version.run_id, version.input)
    return classifier_for_prediction(run_number(classifier_ref, "--classifier"))


def category_map(text: str | None) -> tuple[list[str] | None, dict[str, str]]:
    """evaluate's --categories: 'A,Break=fracture' -> the cohort's categories to read, and those renamed
    onto the model's."""
    if not text:
        return None, {}
    names, renamed = [], {}
    for part in (part.strip() for part in text.split(",")):
        if not part:
            continue
        cohort, _, model = (side.strip() for side in part.partition("="))
        if not cohort or (_ and not model):
            raise click.BadParameter(f"{part!r}: write NAME or COHORT_NAME=MODEL_NAME", param_hint="--categories")
        names.append(cohort)
        if model:
            renamed[cohort] = model
    return names, renamed


def existing_file(path: Path, option: str) -> Path:
    path = path.expanduser()
    if not path.is_file():
        raise click.BadParameter(f"{path} is not a file", param_hint=option)
    return path.resolve()


def appendable_file(path: Path) -> Path:
    """--results: a Markdown file the worker appends to (made where it is not there yet)."""
    path = path.expanduser().resolve()
    if path.exists() and not (path.is_file() and os.access(path, os.W_OK)):
        raise click.BadParameter(f"{path} is not a file this user can write", param_hint="--results")
    writable_folder(path.parent)
    return path


def chosen_segmentation(classifier: Classifier, seg_ref: str | None) -> Segmentation:
    """The folds that give the masks: --segmentation's run, else the one whose map an image+seg classifier
    reads, else the newest training run of the classifier's dataset."""
    from services.dispatcher.refs import run_number
    from shared.read_model import segmentation_run

    dataset_id = int(classifier.run["params"]["dataset_id"])
    seg_run = run_number(seg_ref, "--segmentation")
    if seg_run is not None and dataset_of(seg_run) != dataset_id:
        raise click.BadParameter(f"{seg_ref} trained on another dataset than the classifier", "--segmentation")
    if classifier.input == IMAGE_SEG:
        if seg_run is not None and seg_run != classifier.seg_run:
            raise click.BadParameter(
                f"the classifier reads the map of r{classifier.seg_run}'s folds, not {seg_ref}'s", "--segmentation"
            )
        seg_run = classifier.seg_run
    segmentation = segmentation_run(seg_run, dataset_id)
    if segmentation is None:
        raise click.ClickException(
            f"no trained nnU-Net run on dataset {dataset_id} gives the masks; run `dispatch train` first"
        )
    return segmentation
