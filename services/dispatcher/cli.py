"""The `dispatch` command: each command builds a request (shared/contract.py), plans its jobs
(shared/plans.py) and records the run; heavy imports stay inside the commands so that `--help` answers at
once, and nothing here imports the workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from services.dispatcher import inputs, options, render
from services.dispatcher.errors import DispatchGroup
from services.dispatcher.follow import emit_json
from services.dispatcher.launch import start
from services.dispatcher.pacs_commands import pacs
from services.dispatcher.refs import parse_ref, run_number
from services.dispatcher.sweeps import sweep, sweep_finish
from services.dispatcher.worker_commands import workers
from shared.defaults import ALL_FOLDS, IMAGE_SEG, RANK_BY, SYNTHETIC


@click.group(cls=DispatchGroup)
def main() -> None:
    """Fracture segmentation and classification jobs on Celery workers.

    Runs are r<N>, jobs are j<N>. Settings come from the environment (DATA_ROOT, DATABASE_URL, BROKER_URL).
    """
    from shared.db.engine import set_retry_window
    from shared.settings import get_settings

    # A user is waiting: a database that does not answer within this window is reported, not waited for.
    set_retry_window(get_settings().dispatch_retry_seconds)


@main.command()
@options.release
@options.dataset
@options.ingest
@click.option(
    "--previous",
    help="The last round (r12: its predict --annotations run, or its ingest or training run): its pictures keep "
    "their sides, and each pre-annotated picture's correction is measured (IoU).",
)
@options.wait
@options.as_json
def ingest(wait: bool, as_json: bool, previous: str | None, **params: Any) -> None:
    """Convert a release (FracAtlas, or any COCO export) into an nnU-Net raw dataset and a classification cache."""
    from shared import plans
    from shared.contract import IngestRequest

    if previous:
        params["previous"] = inputs.previous_round(previous)
    request = IngestRequest.build(**inputs.release_paths(params))
    request = request.model_copy(update={"upscale_models": inputs.upscale_models(request.upscale)})
    start("ingest", request.params(), plans.ingest(), wait, as_json)


@main.command()
@options.dataset
@options.configuration
@options.planner
@options.plans
@click.option(
    "--plans-from",
    help="Another dataset's plans instead of planning (a run, r12): moved here as nnU-Net has it, so that "
    "`dispatch train --pretrained` can start from that run's folds.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the 5-fold split.")
@options.wait
@options.as_json
def preprocess(wait: bool, as_json: bool, plans_from: str | None, **params: Any) -> None:
    """nnU-Net's plan, integrity check and preprocessing, and a fixed 5-fold split."""
    from shared import plans
    from shared.contract import PreprocessRequest
    from shared.settings import get_settings

    if plans_from:
        params.update(inputs.plans_source(plans_from))
    request = PreprocessRequest.build(**params)
    request.raw(get_settings().layout)
    start("preprocess", request.params(), plans.preprocess(), wait, as_json)


@main.command()
@options.dataset
@options.train
@click.option(
    "--pretrained",
    help="Start each fold from another run's fold (r12: its first trained fold; r12:3: fold 3) or a checkpoint "
    "file: nnU-Net's -pretrained_weights; the plans must be that run's (dispatch preprocess --plans-from).",
)
@options.wait
@options.as_json
def train(wait: bool, as_json: bool, pretrained: str | None, **params: Any) -> None:
    """Train nnU-Net folds in parallel (one per gpu-queue worker), then evaluate the ensemble on imagesTs."""
    from shared import plans
    from shared.contract import TrainRequest
    from shared.settings import get_settings

    request = TrainRequest.build(**params)  # its options checked before the job table is read
    if pretrained:
        request = request.model_copy(update={"pretrained": inputs.pretrained_checkpoint(pretrained)})
    if params["plans"] is None:
        request = request.model_copy(update={"plans": inputs.newest_plans(request.dataset_id) or request.plans})
    request.preprocessed(get_settings().layout)
    start("train", request.params(), plans.train(request), wait, as_json)


@main.command()
@options.release
@options.dataset
@options.ingest
@options.planner
@options.train
@options.pipeline_classifier
@options.wait
@options.as_json
def pipeline(wait: bool, as_json: bool, **params: Any) -> None:
    """Ingest, preprocess, train the folds and evaluate, as one run (then the classifier, if asked)."""
    from shared import plans
    from shared.contract import PipelineRequest

    request = PipelineRequest.build(**inputs.release_paths(params))
    update = {"upscale_models": inputs.upscale_models(request.upscale), "weights": inputs.weights_file(request.weights)}
    request = request.model_copy(update=update)
    start("pipeline", request.params(), plans.pipeline(request), wait, as_json)


@main.command()
@click.option(
    "--source",
    default=SYNTHETIC,
    show_default=True,
    help=f"'{SYNTHETIC}': the ingest builds a small release under DATA_ROOT; or a release folder.",
)
@click.option("--dataset-id", default=990, show_default=True, type=int)
@click.option("--size", default=64, show_default=True, type=int)
@click.option("--folds", default=ALL_FOLDS, show_default=True)
@click.option("--epochs", default=8, show_default=True, type=int)
@click.option("--iterations", default=20, show_default=True, type=int)
@click.option("--classifier-epochs", default=10, show_default=True, type=int)
@options.wait
@options.as_json
def demo(source: str, wait: bool, as_json: bool, **params: Any) -> None:
    """The whole chain on a synthetic (or given) release with short training; prints Dice and classifier metrics."""
    from shared import plans
    from shared.contract import PipelineRequest

    request = PipelineRequest.build(source=inputs.release_folder(source), overwrite=True, save_every=1, **params)
    start("pipeline", request.params(), plans.pipeline(request), wait, as_json)


@main.command()
@options.dataset
@options.classify
@options.wait
@options.as_json
def classify(
    requested_input: str, compare: bool, seg_run: str | None, wait: bool, as_json: bool, **params: Any
) -> None:
    """Train the fracture classifier (ResNet18, or the --backbone asked) on the ingest's cache of every image;
    report test metrics."""
    from shared import plans
    from shared.contract import ClassifyRequest
    from shared.read_model import classifier_inputs, segmentation_run

    request = ClassifyRequest.build(**params)
    inputs.classification_cache(request.dataset_id)
    request = request.model_copy(update={"weights": inputs.weights_file(request.weights)})
    segmentation = segmentation_run(run_number(seg_run, "--seg-run"), request.dataset_id)
    modes = classifier_inputs(requested_input, compare, segmentation)
    if IMAGE_SEG in modes:
        assert segmentation is not None
        request = request.model_copy(update={"seg_run": segmentation.run_id})
    specs = plans.classify(modes, request.backbone, seg_run=request.seg_run)
    start("classify", {**request.params(), "inputs": modes}, specs, wait, as_json)


@main.command("sr-train")
@options.pictures
@options.dataset
@options.superres
@options.wait
@options.as_json
def sr_train(source: str, wait: bool, as_json: bool, **params: Any) -> None:
    """Learn super-resolution for the small radiographs from the release's large ones; score it against bicubic."""
    from shared import plans
    from shared.contract import SuperResRequest
    from shared.read_model import SUPERRES_KIND

    if source == SYNTHETIC:
        raise click.BadParameter("sr-train learns from a real release's large pictures", param_hint="--source")
    request = SuperResRequest.build(source=inputs.release_folder(source), **params)
    start(SUPERRES_KIND, request.params(), plans.superres(request), wait, as_json)


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="[default: DATA_ROOT/runs/r<N>/predictions]"
)
@click.option("--classifier", "classifier_ref", help="The classify run (r12) [default: the newest that succeeded].")
@click.option("--model", help="A registered classifier in MLflow: NAME, NAME@ALIAS or NAME/VERSION.")
@options.segmentation
@click.option(
    "--probabilities", is_flag=True, help="DICOM inputs: a FRACTIONAL SEG (each category's probability), not BINARY."
)
@options.annotations
@click.option("--pacs", "pacs_url", help="A PACS's DICOMweb URL (http://pacs:8042/dicom-web): predict --study there.")
@click.option("--study", help="With --pacs: the Study Instance UID whose radiographs (DX, CR, MG) are predicted.")
@click.option("--series", help="With --pacs: only this series of the study.")
@click.option("--store", is_flag=True, help="With --pacs: send the SEGs and reports back to the study (STOW-RS).")
@click.option(
    "--keep-local", is_flag=True, help="With --store: keep the local SEGs and reports once the PACS took them."
)
@click.option(
    "--store-to",
    "store_to",
    help="Files: send the DICOM radiographs' SEGs and reports to this PACS's DICOMweb URL (STOW-RS), into their "
    "studies there.",
)
@options.wait
@options.as_json
def predict(
    paths: tuple[Path, ...],
    out: Path | None,
    classifier_ref: str | None,
    model: str | None,
    seg_ref: str | None,
    probabilities: bool,
    annotations: str | None,
    image_url: str,
    pacs_url: str | None,
    study: str | None,
    series: str | None,
    store: bool,
    keep_local: bool,
    store_to: str | None,
    wait: bool,
    as_json: bool,
) -> None:
    """Masks, overlays and fracture probabilities for radiographs (JPEG, PNG, DICOM, NIfTI; files or folders,
    or a study in a PACS with --pacs); a DICOM Segmentation and report for each DICOM radiograph, kept in --out
    or, without it, in the data root's private folder (they carry the patient's header)."""
    from shared import plans
    from shared.contract import PredictRequest

    inputs.one_source(paths, pacs_url, study, series, store, keep_local)
    files = inputs.radiograph_files(paths) if paths else []
    store_to = inputs.store_to(store_to, files) if store_to else None
    out = inputs.writable_folder(out) if out else None
    classifier = inputs.chosen_classifier(model, classifier_ref)
    dataset_id = int(classifier.run["params"]["dataset_id"])
    segmentation = inputs.chosen_segmentation(classifier, seg_ref)
    request = PredictRequest.build(
        files=files,
        pacs=inputs.pacs_study(pacs_url, study, series, store, keep_local) if pacs_url else None,
        out=str(out) if out else None,
        classifier_run=classifier.run["id"],
        input=classifier.input,
        checkpoint=classifier.checkpoint,
        seg_run=segmentation.run_id,
        dataset_id=dataset_id,
        probabilities=probabilities,
        annotations=annotations,
        image_url=image_url,
        store_to=store_to,
    )
    what = f"{len(files)} file(s)" if files else f"a study at {request.pacs.url}"
    start("predict", request.params(), plans.predict(what), wait, as_json)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="[default: DATA_ROOT/runs/r<N>/rank]")
@click.option(
    "--top", default=20, show_default=True, type=int, help="The pictures to label next: the sheet's and files'."
)
@click.option(
    "--by",
    type=click.Choice(RANK_BY),
    default="both",
    show_default=True,
    help="The folds' disagreement, the classifier's doubt, both (their mean rank), or random (the baseline).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="--by random's seed.")
@click.option("--classifier", "classifier_ref", help="The classify run (r12) [default: the newest that succeeded].")
@click.option("--model", help="A registered classifier in MLflow: NAME, NAME@ALIAS or NAME/VERSION.")
@options.segmentation
@options.annotations
@options.wait
@options.as_json
def rank(
    paths: tuple[Path, ...],
    out: Path | None,
    classifier_ref: str | None,
    model: str | None,
    seg_ref: str | None,
    wait: bool,
    as_json: bool,
    **params: Any,
) -> None:
    """Unlabelled radiographs (files or folders) in the order to label them: where the folds disagree and the
    classifier doubts most. rank.csv, a contact sheet of the top N and, with --annotations, the top N as the
    tool imports them."""
    from shared import plans
    from shared.contract import RankRequest

    files = inputs.radiograph_files(paths)
    out = inputs.writable_folder(out) if out else None
    classifier = inputs.chosen_classifier(model, classifier_ref)
    segmentation = inputs.chosen_segmentation(classifier, seg_ref)
    request = RankRequest.build(
        files=files,
        out=str(out) if out else None,
        classifier_run=classifier.run["id"],
        input=classifier.input,
        checkpoint=classifier.checkpoint,
        seg_run=segmentation.run_id,
        dataset_id=int(classifier.run["params"]["dataset_id"]),
        **params,
    )
    start("rank", request.params(), plans.rank(len(files)), wait, as_json)


@main.command()
@options.cohort
@options.segmentation
@click.option("--classifier", "classifier_ref", help="The classify run (r12) [default: the newest that succeeded].")
@click.option("--model", help="A registered classifier in MLflow: NAME, NAME@ALIAS or NAME/VERSION.")
@click.option(
    "--by",
    multiple=True,
    help="Figures per stratum too: category, region (FracAtlas's body region), or a column of --strata; repeat it.",
)
@click.option(
    "--strata",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A CSV of file_name and columns to report by (site, device), named with --by.",
)
@click.option(
    "--results",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append the table of figures to this Markdown file (docs/results.md) in its format.",
)
@options.wait
@options.as_json
def evaluate(
    seg_ref: str | None,
    classifier_ref: str | None,
    model: str | None,
    by: tuple[str, ...],
    strata: Path | None,
    results: Path | None,
    wait: bool,
    as_json: bool,
    **cohort: Any,
) -> None:
    """An external cohort (another hospital's radiographs, read as the ingest reads a release) scored by a
    trained model at the thresholds its validation chose: Dice per category, false positives on negatives,
    discrimination and calibration, each with a bootstrap 95% interval; pictures the model's dataset holds
    are named and left out."""
    from shared import plans
    from shared.contract import EvaluateRequest, IngestRequest

    if cohort.get("source") == SYNTHETIC:
        raise click.BadParameter("an external cohort is real radiographs from elsewhere", param_hint="--source")
    classifier = inputs.chosen_classifier(model, classifier_ref)
    dataset_id = int(classifier.run["params"]["dataset_id"])
    segmentation = inputs.chosen_segmentation(classifier, seg_ref)
    names, renamed = inputs.category_map(cohort.pop("categories"))
    request = EvaluateRequest.build(
        cohort=IngestRequest.build(**inputs.release_paths(cohort), categories=names),
        category_map=renamed,
        strata=str(inputs.existing_file(strata, "--strata")) if strata else None,
        by=list(by),
        seg_run=segmentation.run_id,
        classifier_run=classifier.run["id"],
        input=classifier.input,
        checkpoint=classifier.checkpoint,
        dataset_id=dataset_id,
        results=str(inputs.appendable_file(results)) if results else None,
    )
    start("evaluate", request.params(), plans.evaluate(request), wait, as_json)


@main.command()
@click.argument("ref")
@click.option("--classifier", "classifier_ref", help="The classify run (r12) whose classifier goes with the folds.")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The bundle to write (bundle.zip); an existing file is not replaced.",
)
@options.wait
@options.as_json
def export(ref: str, classifier_ref: str | None, out: Path, wait: bool, as_json: bool) -> None:
    """A training run's folds (nnU-Net's own export) and a classifier as one bundle for another site: its
    weights and ONNX, the facts of its input, a model card and every file's SHA-256."""
    from shared import plans
    from shared.contract import ExportRequest
    from shared.read_model import classifier_for_prediction, segmentation_run

    seg_run = run_number(ref, "REF")
    assert seg_run is not None
    dataset_id = inputs.dataset_of(seg_run)
    segmentation = segmentation_run(seg_run, dataset_id)
    assert segmentation is not None
    classifier = classifier_for_prediction(run_number(classifier_ref, "--classifier")) if classifier_ref else None
    if classifier is not None:
        if int(classifier.run["params"]["dataset_id"]) != dataset_id:
            raise click.BadParameter(f"{classifier_ref} trained on another dataset than r{seg_run}", "--classifier")
        if classifier.input == IMAGE_SEG and classifier.seg_run != seg_run:
            raise click.BadParameter(
                f"{classifier_ref} reads the map of r{classifier.seg_run}'s folds, not r{seg_run}'s", "--classifier"
            )
    request = ExportRequest.build(
        seg_run=seg_run,
        dataset_id=dataset_id,
        classifier_run=classifier.run["id"] if classifier else None,
        input=classifier.input if classifier else None,
        checkpoint=classifier.checkpoint if classifier else None,
        out=str(inputs.new_file(out, ".zip")),
    )
    start("export", request.params(), plans.export(request), wait, as_json)


@main.command(name="import")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--dataset-id",
    type=int,
    help="Install the folds under this dataset id, one this data root does not have [default: the id they were "
    "trained under].",
)
@options.wait
@options.as_json
def import_(bundle: Path, dataset_id: int | None, wait: bool, as_json: bool) -> None:
    """A bundle from `dispatch export` at another site: every file checked against its SHA-256, the folds
    installed by nnU-Net's own nnUNetv2_install_pretrained_model_from_zip, the classifier kept; `dispatch
    predict` then uses it. Bundles hold pickled checkpoints: import only those from people you trust."""
    from shared import plans
    from shared.bundles import checked_card
    from shared.contract import ImportRequest
    from shared.settings import get_settings

    bundle = bundle.expanduser().resolve()
    card = checked_card(bundle)
    segmentation, classifier = card["segmentation"], card.get("classifier")
    request = ImportRequest.build(
        bundle=str(bundle),
        dataset_id=dataset_id if dataset_id is not None else card["data"]["dataset_id"],
        bundle_dataset_id=card["data"]["dataset_id"],
        configuration=segmentation["configuration"],
        trainer=segmentation["trainer"],
        plans=segmentation["plans"],
        folds=segmentation["folds"],
        classifier_input=classifier["input"] if classifier else None,
    )
    taken = get_settings().layout.nnunet_datasets(request.dataset_id)
    if taken:
        raise click.BadParameter(
            f"dataset {request.dataset_id} is in this data root already ({taken[0]}); choose a free id",
            param_hint="--dataset-id",
        )
    start("import", request.params(), plans.import_bundle(request), wait, as_json)


@main.command()
@click.argument("ref")
@options.as_json
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
        emit_json({"job": f"j{number}", "attempt": again.attempt})
    else:
        click.echo(f"j{number} queued again as attempt {again.attempt}")


@main.command("jobs")
@click.option("--run", "run_ref", help="Only this run's jobs.")
@click.option("--all", "show_all", is_flag=True, help="Also the jobs of finished runs.")
@options.as_json
def list_jobs(run_ref: str | None, show_all: bool, as_json: bool) -> None:
    """The job table: run, job, kind, state, attempt, worker, progress, age."""
    from shared.read_model import list_jobs as query

    rows = query(run_number(run_ref, "--run"), include_finished_runs=show_all)
    if as_json:
        emit_json(rows)
    elif rows:
        click.echo(render.jobs_table(rows))
    else:
        click.echo("no jobs yet: `dispatch demo --wait` runs the demo")


@main.command()
@click.argument("ref")
@options.as_json
def show(ref: str, as_json: bool) -> None:
    """Everything about one run (r12, or 12) or one job (j34)."""
    from shared.read_model import get_job, get_run

    kind, number = parse_ref(ref)
    content = get_run(number) if kind == "run" else get_job(number)
    if as_json:
        emit_json(content)
    else:
        click.echo(render.show_run(content) if kind == "run" else render.show_job(content))


@main.command()
@click.argument("ref")
@options.as_json
def cancel(ref: str, as_json: bool) -> None:
    """Cancel a run (every open job of it) or one job."""
    from services.dispatcher.submit import send_all
    from shared import jobs
    from shared.celery_app import app
    from shared.read_model import get_job

    kind, number = parse_ref(ref)
    result = jobs.cancel(run_id=number) if kind == "run" else jobs.cancel(job_id=number)
    for task_id in result.task_ids:
        app.control.revoke(task_id)
    if kind == "job":  # the run goes on without this job: its next stage may be free to start now
        send_all(jobs.release_waiting(get_job(number)["run_id"]))
    if as_json:
        emit_json({"ref": ref, "cancelled_jobs": result.jobs, "revoked_tasks": result.task_ids})
    else:
        click.echo(f"{ref}: {result.jobs} open job(s) cancelled" if result.jobs else f"{ref}: nothing open to cancel")


main.add_command(sweep)
main.add_command(pacs)
main.add_command(workers)
main.add_command(sweep_finish)
