"""The `dispatch` command. Heavy imports stay inside the commands so that `--help` answers at once."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from services.dispatcher import render
from services.dispatcher.refs import parse_ref
from workers.gpu.classifier.request import IMAGE, IMAGE_SEG  # names only: no torch

# --wait reads the run every 0.2 s for half a minute (a short run, an ingest say, is seen to end promptly),
# then every second: each read costs a few milliseconds of CPU, which a follower of an hours-long fold
# should not take from the training.
WAIT_POLL_S = 0.2
WAIT_POLL_SLOW_S = 1.0
WAIT_FAST_FOR_S = 30.0


def _emit_json(content: Any) -> None:
    click.echo(json.dumps(content, indent=2, default=str))


def _wait(run_id: int, as_json: bool) -> dict[str, Any]:
    """Follow a run until it ends, drawing one live line on a terminal (stderr)."""
    from shared.views import get_run

    live = sys.stderr.isatty() and not as_json
    last = ""
    started = time.monotonic()
    while True:
        run = _read_through_outages(get_run, run_id)
        line = render.run_line(run)
        if live:
            click.echo("\r" + line[:200].ljust(len(click.unstyle(last))), nl=False, err=True)
        elif not as_json and click.unstyle(line) != click.unstyle(last):
            click.echo(line, err=True)
        last = line
        if run["state"] in ("succeeded", "failed", "cancelled"):
            if live:
                click.echo(err=True)
            return run
        time.sleep(WAIT_POLL_S if time.monotonic() - started < WAIT_FAST_FOR_S else WAIT_POLL_SLOW_S)


def _read_through_outages(read: Any, run_id: int) -> dict[str, Any]:
    """A follower of a days-long run outlives a database restart: it says so once and reads again."""
    from shared.db.transient import is_transient

    said = False
    while True:
        try:
            return read(run_id)
        except Exception as error:
            if not is_transient(error):
                raise
            if not said:
                click.echo("\nthe job table does not answer; still following the run", err=True)
                said = True
            time.sleep(WAIT_POLL_SLOW_S)


def _finish(run_id: int, wait: bool, as_json: bool) -> None:
    from shared.views import get_run

    if not wait:
        run = get_run(run_id)
        if as_json:
            _emit_json(run)
        else:
            click.echo(f"run r{run_id} queued; follow it with `dispatch show r{run_id}` or `dispatch jobs`")
        return
    run = _wait(run_id, as_json)
    if as_json:
        _emit_json(run)
    else:
        click.echo(render.show_run(run))
    if run["state"] != "succeeded":
        raise SystemExit(1)


def _warn_if_no_workers(as_json: bool) -> None:
    from services.dispatcher.submit import any_worker_online

    if not as_json and not any_worker_online():
        click.echo("warning: no worker answers; the run waits in the queue until `make up` starts some", err=True)


def _start(kind: str, params: dict[str, Any], specs: list[Any], wait: bool, as_json: bool) -> None:
    from services.dispatcher.submit import submit

    run_id = submit(kind, params, specs)
    if wait:
        _warn_if_no_workers(as_json)
    _finish(run_id, wait, as_json)


class DispatchGroup(click.Group):
    """Turns the system's expected failures into one clear line and a non-zero exit, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from services.dispatcher.submit import BrokerUnreachable
        from shared.jobs import NotFound
        from workers.errors import UserFacingError

        try:
            return super().invoke(ctx)
        except NotFound as error:
            raise click.ClickException(
                f"no {error.args[0]} in the job table; `dispatch jobs --all` lists them"
            ) from error
        except (UserFacingError, BrokerUnreachable) as error:
            raise click.ClickException(str(error)) from error
        except Exception as error:
            from sqlalchemy.exc import DBAPIError

            if not isinstance(error, DBAPIError):
                raise
            from shared.redact import redact_text, redact_url
            from shared.settings import get_settings

            raise click.ClickException(
                f"cannot use the job table at {redact_url(get_settings().db_url)} "
                f"({redact_text(str(error.orig)).strip().splitlines()[0]}); "
                "check DATABASE_URL, or run `make up` (it migrates the table)"
            ) from error


@click.group(cls=DispatchGroup)
def main() -> None:
    """Fracture segmentation and classification jobs on Celery workers.

    Runs are r<N>, jobs are j<N>. Settings come from the environment (DATA_ROOT, DATABASE_URL, BROKER_URL).
    """
    from shared.db.engine import set_retry_window
    from shared.settings import get_settings

    # A user is waiting: a database that does not answer within this window is reported, not waited for.
    set_retry_window(get_settings().dispatch_retry_seconds)


wait_option = click.option("--wait", is_flag=True, help="Follow the run until it ends; exit 1 if it fails.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print a machine-readable object.")
dataset_option = click.option(
    "--dataset-id",
    default=921,
    show_default=True,
    type=click.IntRange(1, 999),
    help="nnU-Net dataset id: nnUNet_raw/Dataset<ID>_FracAtlas.",
)


def options(*decorators: Any) -> Any:
    def apply(function: Any) -> Any:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


FRACTION = click.FloatRange(0, 1, min_open=True, max_open=True)

ingest_options = options(
    # The same bounds a worker enforces, refused here before a run exists.
    click.option(
        "--size", default=224, show_default=True, type=click.IntRange(32, 2048), help="Output width and height."
    ),
    click.option(
        "--test-fraction",
        default=0.2,
        show_default=True,
        type=FRACTION,
        help="Share of fractured cases held out as imagesTs (stratified split).",
    ),
    click.option("--seed", default=0, show_default=True, type=int, help="Seed of the splits."),
    click.option(
        "--split",
        type=click.Choice(["stratified", "official"]),
        default="stratified",
        show_default=True,
        help="Seeded stratified split, or the release's Utilities/Fracture Split.",
    ),
    click.option("--overwrite", is_flag=True, help="Replace an existing dataset with this id."),
)
train_options = options(
    click.option("--folds", default="0-4", show_default=True, help="A range (0-4), a list (0,2) or 'all' (0-4)."),
    click.option("--config", "configuration", default="2d", show_default=True, help="nnU-Net configuration."),
    click.option(
        "--trainer",
        default=None,
        help="nnU-Net trainer class [default: nnUNetTrainer; nnUNetTrainerJobs with --epochs].",
    ),
    click.option("--plans", default="nnUNetPlans", show_default=True, help="nnU-Net plans identifier."),
    click.option("--epochs", type=click.IntRange(1), help="Epochs (through the project's nnUNetTrainerJobs)."),
    click.option("--iterations", type=click.IntRange(1), help="Training iterations per epoch (nnUNetTrainerJobs)."),
    click.option(
        "--save-every", type=click.IntRange(1), help="Checkpoint every N epochs (nnUNetTrainerJobs; default 5)."
    ),
)


def _source(source: Path) -> str:
    if not source.expanduser().is_dir():
        raise click.BadParameter(
            f"{source} is not a folder; pass the unpacked FracAtlas release", param_hint="--source"
        )
    return str(source.expanduser().resolve())


def _synthetic_source() -> str:
    from shared.settings import get_settings
    from workers.cpu.synthetic import make_synthetic_release

    folder = get_settings().root / "synthetic" / "FracAtlas"
    if not (folder / "dataset.csv").exists():
        make_synthetic_release(folder)
    return str(folder.resolve())


def _train_params(params: dict[str, Any]) -> dict[str, Any]:
    from services.dispatcher.folds import parse_folds
    from workers.nnunet import JOBS_TRAINER

    jobs_only = {name: params[name] for name in ("epochs", "iterations", "save_every") if params.get(name)}
    trainer = params["trainer"] or (JOBS_TRAINER if jobs_only else "nnUNetTrainer")
    if jobs_only and trainer != JOBS_TRAINER:
        flags = ", ".join("--" + name.replace("_", "-") for name in jobs_only)
        raise click.BadParameter(f"{flags} work through {JOBS_TRAINER}, not {trainer}", param_hint="--trainer")
    return {**params, "trainer": trainer, "folds": parse_folds(params["folds"])}


def _train_specs(params: dict[str, Any], first_stage: int) -> list[Any]:
    from shared.jobs import JobSpec
    from shared.tasknames import NNUNET_EVALUATE, NNUNET_TRAIN_FOLD

    folds = [
        JobSpec("fold", f"fold {fold}", NNUNET_TRAIN_FOLD, {"fold": fold}, first_stage) for fold in params["folds"]
    ]
    return [*folds, JobSpec("evaluate", "ensemble + test Dice", NNUNET_EVALUATE, stage=first_stage + 1)]


def _ingest_specs() -> list[Any]:
    from shared.jobs import JobSpec
    from shared.tasknames import INGEST_PLAN

    return [JobSpec("plan", "plan ingest", INGEST_PLAN)]


def _classifier_specs(
    modes: list[str], first_stage: int, job_params: dict[str, Any], seg_run: int | None = None
) -> list[Any]:
    """The segmentation channel's job where a mode needs it, then one classifier job per input mode.
    `seg_run` None: the run's own folds (a pipeline)."""
    from shared.jobs import JobSpec
    from shared.tasknames import CLASSIFY_CHANNEL, CLASSIFY_TRAIN

    specs = []
    if IMAGE_SEG in modes:
        own = seg_run is None
        name = "nnU-Net fracture maps" + ("" if own else f" (r{seg_run})")
        specs.append(JobSpec("channel", name, CLASSIFY_CHANNEL, {} if own else {"seg_run": seg_run}, first_stage))
    stage = first_stage + len(specs)
    for mode in modes:
        specs.append(JobSpec("classifier", f"ResNet18 {mode}", CLASSIFY_TRAIN, {**job_params, "input": mode}, stage))
    return specs


def _pipeline_specs(params: dict[str, Any]) -> list[Any]:
    from dataclasses import asdict

    from shared.jobs import JobSpec
    from shared.tasknames import NNUNET_PREPROCESS
    from workers.gpu.classifier.request import ClassifyRequest
    from workers.nnunet import FOLDS

    # The ingest's plan job adds its convert (stage 1) and assemble (stage 2) jobs itself.
    preprocess = JobSpec("preprocess", "nnU-Net plan + preprocess", NNUNET_PREPROCESS, stage=3)
    specs = [*_ingest_specs(), preprocess, *_train_specs(params, first_stage=4)]
    if params.get("classifier_epochs"):
        # The classifier's own settings travel with its jobs: the run's `epochs` are nnU-Net's.
        request = ClassifyRequest(params["dataset_id"], epochs=params["classifier_epochs"], seed=params["seed"])
        job_params = {key: value for key, value in asdict(request).items() if key not in ("input", "seg_run")}
        modes = [IMAGE_SEG] if len(params["folds"]) == FOLDS else [IMAGE]
        specs += _classifier_specs(modes, first_stage=6, job_params=job_params)
    return specs


@main.command()
@click.option(
    "--source",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The unpacked FracAtlas release (holds images/, Annotations/, dataset.csv).",
)
@dataset_option
@ingest_options
@wait_option
@json_option
def ingest(source: Path, wait: bool, as_json: bool, **params: Any) -> None:
    """Convert a FracAtlas release into an nnU-Net raw dataset and a classification cache."""
    _start("ingest", {"source": _source(source), **params}, _ingest_specs(), wait, as_json)


@main.command()
@dataset_option
@click.option("--config", "configuration", default="2d", show_default=True, help="nnU-Net configuration.")
@click.option("--plans", default="nnUNetPlans", show_default=True, help="nnU-Net plans identifier.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the 5-fold split.")
@wait_option
@json_option
def preprocess(wait: bool, as_json: bool, **params: Any) -> None:
    """nnU-Net's plan, integrity check and preprocessing, and a fixed 5-fold split."""
    from shared.jobs import JobSpec
    from shared.settings import get_settings
    from shared.tasknames import NNUNET_PREPROCESS
    from workers.nnunet import Experiment

    Experiment(params["dataset_id"], params["configuration"]).raw(get_settings())
    specs = [JobSpec("preprocess", "nnU-Net plan + preprocess", NNUNET_PREPROCESS)]
    _start("preprocess", params, specs, wait, as_json)


@main.command()
@dataset_option
@train_options
@wait_option
@json_option
def train(wait: bool, as_json: bool, **params: Any) -> None:
    """Train nnU-Net folds in parallel (one per gpu-queue worker), then evaluate the ensemble on imagesTs."""
    from shared.settings import get_settings
    from workers.nnunet import experiment_of

    params = _train_params(params)
    experiment_of(params).preprocessed(get_settings())
    _start("train", params, _train_specs(params, first_stage=0), wait, as_json)


@main.command()
@click.option(
    "--source", required=True, type=click.Path(file_okay=False, path_type=Path), help="The unpacked FracAtlas release."
)
@dataset_option
@ingest_options
@train_options
@click.option(
    "--classifier-epochs",
    type=click.IntRange(1),
    help="Then train the ResNet18 classifier for N epochs (on image+seg when all five folds train).",
)
@wait_option
@json_option
def pipeline(source: Path, wait: bool, as_json: bool, **params: Any) -> None:
    """Ingest, preprocess, train the folds and evaluate, as one run (then the classifier, if asked)."""
    params = _train_params({"source": _source(source), **params})
    _start("pipeline", params, _pipeline_specs(params), wait, as_json)


@main.command()
@click.option(
    "--source",
    default="synthetic",
    show_default=True,
    help="'synthetic' builds a small release under DATA_ROOT; or a release folder.",
)
@click.option("--dataset-id", default=990, show_default=True, type=click.IntRange(1, 999))
@click.option("--size", default=64, show_default=True, type=click.IntRange(32, 2048))
@click.option("--folds", default="0-4", show_default=True)
@click.option("--epochs", default=8, show_default=True, type=click.IntRange(1))
@click.option("--iterations", default=20, show_default=True, type=click.IntRange(1))
@click.option("--classifier-epochs", default=10, show_default=True, type=click.IntRange(1))
@wait_option
@json_option
def demo(source: str, wait: bool, as_json: bool, **params: Any) -> None:
    """The whole chain on a synthetic (or given) release with short training; prints Dice and classifier metrics."""
    release = _synthetic_source() if source == "synthetic" else _source(Path(source))
    params = _train_params(
        {
            "source": release,
            "test_fraction": 0.2,
            "seed": 0,
            "split": "stratified",
            "overwrite": True,
            "configuration": "2d",
            "trainer": None,
            "plans": "nnUNetPlans",
            "save_every": 1,
            **params,
        }
    )
    _start("pipeline", params, _pipeline_specs(params), wait, as_json)


def _segmentation_run(ref: str | None, dataset_id: int) -> tuple[int, list[int]] | None:
    """The nnU-Net training run that feeds the classifier: the one named, else the newest that succeeded."""
    from shared.views import SEGMENTATION_RUN_KINDS, get_run, latest_succeeded_run, trained_folds

    if ref is None:
        run = latest_succeeded_run(SEGMENTATION_RUN_KINDS, dataset_id)
        return (run["id"], trained_folds(run["id"])) if run else None
    kind, number = parse_ref(ref)
    if kind != "run" or get_run(number)["kind"] not in SEGMENTATION_RUN_KINDS:
        raise click.BadParameter(f"{ref} is not an nnU-Net training run (dispatch train or pipeline)")
    folds = trained_folds(number)
    if not folds:
        raise click.BadParameter(f"no fold of {ref} finished training", param_hint="--seg-run")
    return number, folds


def _classify_modes(requested: str, compare: bool, segmentation: tuple[int, list[int]] | None) -> list[str]:
    from workers.nnunet import FOLDS

    if compare or requested == IMAGE_SEG:
        if segmentation is None:
            raise click.BadParameter(
                "image+seg needs a trained nnU-Net run on this dataset: run `dispatch train` first, name one with "
                "--seg-run, or use --input image"
            )
        return [IMAGE, IMAGE_SEG] if compare else [IMAGE_SEG]
    if requested == IMAGE:
        return [IMAGE]
    # auto: the segmentation feeds the classifier once every fold can give out-of-fold maps
    return [IMAGE_SEG] if segmentation and len(segmentation[1]) == FOLDS else [IMAGE]


@main.command()
@dataset_option
@click.option(
    "--input",
    "requested_input",
    type=click.Choice(["auto", IMAGE, IMAGE_SEG]),
    default="auto",
    show_default=True,
    help="The radiograph alone, or with nnU-Net's fracture probability map as a second channel "
    "(auto: image+seg where a run with every fold trained exists).",
)
@click.option("--compare", is_flag=True, help="Train image and image+seg side by side and report both.")
@click.option("--seg-run", help="The nnU-Net training run (r12) whose folds give the map [default: the newest].")
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(2))
@click.option("--learning-rate", default=1e-3, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option(
    "--patience", default=10, show_default=True, type=click.IntRange(1), help="Epochs without a better val AUC."
)
@click.option(
    "--weights",
    default="none",
    show_default=True,
    help="'none' (from scratch), 'imagenet' (torchvision's, cached in TORCH_HOME or fetched) or a state dict file.",
)
@click.option("--val-fraction", default=0.15, show_default=True, type=FRACTION)
@click.option("--test-fraction", default=0.15, show_default=True, type=FRACTION)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the split and the training.")
@wait_option
@json_option
def classify(
    requested_input: str, compare: bool, seg_run: str | None, wait: bool, as_json: bool, **params: Any
) -> None:
    """Train the ResNet18 fracture classifier on the ingest's cache of every image; report test metrics."""
    if params["val_fraction"] + params["test_fraction"] >= 1:
        raise click.BadParameter(
            f"{params['val_fraction']} + {params['test_fraction']} leaves no images to train on; "
            "keep the two below 1 together",
            param_hint="--val-fraction/--test-fraction",
        )
    from shared.settings import get_settings
    from workers.gpu.classifier.data import CACHE_IMAGES, cache_folder

    cache = cache_folder(get_settings().classification_dir, params["dataset_id"])
    if not (cache / CACHE_IMAGES).exists():
        raise click.ClickException(
            f"no classification cache at {cache}; run `dispatch ingest --dataset-id {params['dataset_id']}` first"
        )
    if params["weights"] not in ("none", "imagenet"):
        weights = Path(params["weights"]).expanduser()
        if not weights.is_file():
            raise click.BadParameter(
                f"{weights} is not a file (a state dict saved with torch.save)", param_hint="--weights"
            )
        params["weights"] = str(weights.resolve())
    segmentation = _segmentation_run(seg_run, params["dataset_id"])
    modes = _classify_modes(requested_input, compare, segmentation)
    if IMAGE_SEG in modes:
        assert segmentation is not None
        params["seg_run"] = segmentation[0]
    specs = _classifier_specs(modes, 0, {}, params.get("seg_run"))
    _start("classify", {**params, "inputs": modes}, specs, wait, as_json)


def _radiograph_files(paths: tuple[Path, ...]) -> list[str]:
    from workers.gpu.classifier.radiographs import is_radiograph_file

    files: list[Path] = []
    for path in paths:
        path = path.expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and is_radiograph_file(p))
            if not found:
                raise click.BadParameter(f"{path} holds no JPEG, PNG or NIfTI file")
            files += found
        elif path.resolve().is_file():
            files.append(path)
        elif path.exists():
            raise click.BadParameter(f"{path} is not a regular file (a FIFO, device or socket); it is not read")
        else:
            raise click.BadParameter(f"{path} does not exist")
    return [str(path.resolve()) for path in files]


def _writable_folder(out: Path) -> Path:
    """--out as the worker will use it: an existing writable folder, or a new one in a writable parent."""
    out = out.expanduser().resolve()
    existing = next(folder for folder in (out, *out.parents) if folder.exists())
    if not existing.is_dir():
        raise click.BadParameter(f"{existing} is not a folder", param_hint="--out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise click.BadParameter(f"{existing} is not writable by this user", param_hint="--out")
    return out


CHECKPOINT_PREFIX = "checkpoint "


def _classifier_checkpoint(ref: str | None) -> dict[str, Any]:
    """The run whose classifier to use (a `dispatch classify` run, or a pipeline that trained one: the newest,
    or `ref`) and its best checkpoint (by validation AUC, where it trained two)."""
    from shared.views import get_run, latest_succeeded_run

    def has_classifier(run: dict[str, Any]) -> bool:
        return any(key.startswith(CHECKPOINT_PREFIX) for key in run["artifacts"])

    if ref is None:
        run = latest_succeeded_run(("classify", "pipeline"), having=has_classifier)
        if run is None:
            raise click.ClickException("no classifier has finished training; run `dispatch classify` first")
    else:
        kind, number = parse_ref(ref)
        run = get_run(number) if kind == "run" else None
        if run is None or run["state"] != "succeeded" or not has_classifier(run):
            raise click.BadParameter(f"{ref} is not a finished run with a classifier", param_hint="--classifier")
    modes = [key.removeprefix(CHECKPOINT_PREFIX) for key in run["artifacts"] if key.startswith(CHECKPOINT_PREFIX)]
    best = max(modes, key=lambda mode: run["metrics"][f"classifier {mode}"]["best_val_auc"] or 0)
    # A pipeline's classifier took its map from the pipeline's own folds.
    seg_run = run["params"].get("seg_run") or (run["id"] if run["kind"] == "pipeline" else None)
    return {"run": run, "input": best, "checkpoint": run["artifacts"][CHECKPOINT_PREFIX + best], "seg_run": seg_run}


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="[default: DATA_ROOT/runs/r<N>/predictions]"
)
@click.option("--classifier", "classifier_ref", help="The classify run (r12) [default: the newest that succeeded].")
@wait_option
@json_option
def predict(paths: tuple[Path, ...], out: Path | None, classifier_ref: str | None, wait: bool, as_json: bool) -> None:
    """Masks, overlays and fracture probabilities for radiographs (JPEG, PNG, NIfTI; files or folders)."""
    from shared.jobs import JobSpec
    from shared.tasknames import CLASSIFY_PREDICT

    files = _radiograph_files(paths)
    out = _writable_folder(out) if out else None
    classifier = _classifier_checkpoint(classifier_ref)
    params = classifier["run"]["params"]
    seg_run = classifier["seg_run"] if classifier["input"] == IMAGE_SEG else None
    segmentation = _segmentation_run(f"r{seg_run}" if seg_run else None, int(params["dataset_id"]))
    if segmentation is None:
        raise click.ClickException(
            f"no trained nnU-Net run on dataset {params['dataset_id']} gives the masks; run `dispatch train` first"
        )
    run_params = {
        "files": files,
        "out": str(out) if out else None,
        "classifier_run": classifier["run"]["id"],
        "input": classifier["input"],
        "checkpoint": classifier["checkpoint"],
        "seg_run": segmentation[0],
        "dataset_id": int(params["dataset_id"]),
    }
    specs = [JobSpec("predict", f"predict {len(files)} file(s)", CLASSIFY_PREDICT)]
    _start("predict", run_params, specs, wait, as_json)


@main.command()
@click.argument("ref")
@json_option
def retry(ref: str, as_json: bool) -> None:
    """Queue a failed or cancelled job again (a fold resumes from its newest checkpoint)."""
    from services.dispatcher.submit import send_all
    from shared import jobs

    kind, number = parse_ref(ref)
    if kind != "job":
        raise click.BadParameter(f"{ref} is a run; retry takes a job (j34)")
    try:
        again = jobs.retry(number)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    send_all([again])
    if as_json:
        _emit_json({"job": f"j{number}", "attempt": again.attempt})
    else:
        click.echo(f"j{number} queued again as attempt {again.attempt}")


@main.command("jobs")
@click.option("--run", "run_ref", help="Only this run's jobs.")
@click.option("--all", "show_all", is_flag=True, help="Also the jobs of finished runs.")
@json_option
def list_jobs(run_ref: str | None, show_all: bool, as_json: bool) -> None:
    """The job table: run, job, kind, state, attempt, worker, progress, age."""
    from shared.views import list_jobs as query

    run_id = None
    if run_ref:
        kind, run_id = parse_ref(run_ref)
        if kind != "run":
            raise click.BadParameter(f"{run_ref} is a job; --run takes a run (r12)")
    rows = query(run_id, include_finished_runs=show_all)
    if as_json:
        _emit_json(rows)
    elif rows:
        click.echo(render.jobs_table(rows))
    else:
        click.echo("no jobs yet: `dispatch demo --wait` runs the demo")


@main.command()
@click.argument("ref")
@json_option
def show(ref: str, as_json: bool) -> None:
    """Everything about one run (r12, or 12) or one job (j34)."""
    from shared.views import get_job, get_run

    kind, number = parse_ref(ref)
    content = get_run(number) if kind == "run" else get_job(number)
    if as_json:
        _emit_json(content)
    else:
        click.echo(render.show_run(content) if kind == "run" else render.show_job(content))


@main.command()
@click.argument("ref")
@json_option
def cancel(ref: str, as_json: bool) -> None:
    """Cancel a run (every open job of it) or one job."""
    from services.dispatcher.submit import send_all
    from shared import jobs
    from shared.celery_app import app
    from shared.views import get_job

    kind, number = parse_ref(ref)
    result = jobs.cancel(run_id=number) if kind == "run" else jobs.cancel(job_id=number)
    for task_id in result.task_ids:
        app.control.revoke(task_id)
    if kind == "job":  # the run goes on without this job: its next stage may be free to start now
        send_all(jobs.release_waiting(get_job(number)["run_id"]))
    if as_json:
        _emit_json({"ref": ref, "cancelled_jobs": result.jobs, "revoked_tasks": result.task_ids})
    else:
        click.echo(f"{ref}: {result.jobs} open job(s) cancelled" if result.jobs else f"{ref}: nothing open to cancel")


@main.command()
@json_option
def workers(as_json: bool) -> None:
    """Online workers, their queues and GPUs."""
    from shared.celery_app import app

    inspector = app.control.inspect(timeout=1.0)
    queues = inspector.active_queues() or {}
    stats = inspector.stats() or {}
    info = {
        name: reply
        for reply_set in (app.control.broadcast("worker_info", reply=True, timeout=1.0) or [])
        for name, reply in reply_set.items()
    }
    rows = [
        {
            "worker": name,
            "queues": sorted(q["name"] for q in queues.get(name, [])),
            "concurrency": stats.get(name, {}).get("pool", {}).get("max-concurrency"),
            "gpu": info.get(name, {}).get("gpu"),
            "pid": stats.get(name, {}).get("pid"),
        }
        for name in sorted(set(queues) | set(stats))
    ]
    if as_json:
        _emit_json(rows)
    elif rows:
        click.echo(
            render.table(
                [
                    [
                        r["worker"],
                        ",".join(r["queues"]),
                        str(r["concurrency"] or ""),
                        r["gpu"] or "-",
                        str(r["pid"] or ""),
                    ]
                    for r in rows
                ],
                ["WORKER", "QUEUES", "CONCURRENCY", "GPU", "PID"],
            )
        )
    else:
        click.echo("no worker answers; start the stack with `make up`")
        raise SystemExit(1)


def run() -> None:
    """The `dispatch` executable: `main`, then an exit that skips the interpreter's teardown.

    Freeing SQLAlchemy's and Celery's modules at exit took about 0.2 s, a quarter of `dispatch train`; by
    then rows are committed and messages sent, so output and logs are flushed and the process ends.
    """
    code: int | str | None = 0
    try:
        main()
    except SystemExit as done:
        code = done.code
    if isinstance(code, str):
        click.echo(code, err=True)
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


if __name__ == "__main__":
    run()
