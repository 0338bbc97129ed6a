"""`dispatch sweep` and `dispatch sweep-finish`: the classifier's hyperparameter search (docs/sweeps.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from services.dispatcher import inputs, options
from services.dispatcher.follow import emit_json
from services.dispatcher.launch import start
from services.dispatcher.refs import parse_ref, run_number
from shared.defaults import CLASSIFY, IMAGE, IMAGE_SEG, PRUNERS, SAMPLERS, SWEEP


@click.command()
@options.dataset
@click.option(
    "--trials",
    type=int,
    help="The study's size; k gpu-queue workers run k trials at once [default: 24; the grid's size for grid].",
)
@click.option("--sampler", type=click.Choice(SAMPLERS), default=SWEEP["sampler"], show_default=True)
@click.option(
    "--space",
    type=click.Path(path_type=Path),
    help="A YAML search space (docs/sweeps.md) [default: learning rate, weight decay, batch size, augmentation, "
    "and the inputs and starting weights this machine offers].",
)
@click.option(
    "--pruner",
    type=click.Choice(PRUNERS),
    default=SWEEP["pruner"],
    show_default=True,
    help="Stop trials early on their validation AUC per epoch.",
)
@click.option(
    "--warmup-epochs", default=SWEEP["warmup_epochs"], show_default=True, type=int, help="Never pruned before."
)
@click.option("--prune-below", type=float, help="Also stop a trial whose val AUC is below this after the warm-up.")
@click.option("--epochs", default=SWEEP["epochs"], show_default=True, type=int, help="Per trial (or in the space).")
@click.option("--patience", default=CLASSIFY["patience"], show_default=True, type=int, help="Per trial.")
@click.option("--seed", default=CLASSIFY["seed"], show_default=True, type=int, help="Of the split and the sampler.")
@click.option("--seg-run", help="The nnU-Net run (r12) whose folds give image+seg's map [default: the newest].")
@options.wait
@options.as_json
def sweep(space: Path | None, seg_run: str | None, wait: bool, as_json: bool, **params: Any) -> None:
    """Search the classifier's settings with Optuna: one trial per gpu-queue job, pruned on val AUC; the best
    trial is scored on the test split at the end."""
    from shared import plans
    from shared.contract import BadOption, SweepRequest
    from shared.read_model import segmentation_run
    from shared.search_space import SpaceError, default_space, read_space

    inputs.classification_cache(params["dataset_id"])
    segmentation = segmentation_run(run_number(seg_run, "--seg-run"), params["dataset_id"])
    try:
        if space is None:
            offered = [IMAGE, IMAGE_SEG] if segmentation and segmentation.complete else [IMAGE]
            weights = ["none", "imagenet"] if inputs.imagenet_cached() else ["none"]
            searched: dict[str, Any] = default_space(offered, weights)
        else:
            searched = _with_weight_files(read_space(space))
        request = SweepRequest.build(space=searched, seg_run=segmentation.run_id if segmentation else None, **params)
    except SpaceError as error:
        raise BadOption(str(error), "--space") from None
    except BadOption as error:
        if space is not None and error.option == "--space":
            raise BadOption(f"{space}: {error}", "--space") from None
        if error.option == "--seg-run" and segmentation is None:
            raise BadOption(
                "image+seg needs a trained nnU-Net run on this dataset: run `dispatch train` first", "--space"
            ) from None
        raise
    start("sweep", request.params(), plans.sweep(request), wait, as_json)


def _with_weight_files(space: dict[str, Any]) -> dict[str, Any]:
    """State dict files named in the space, as absolute paths that exist (a worker reads them)."""
    entry = space.get("weights")
    if entry is None:
        return space
    listed = entry if isinstance(entry, list) else entry.get("choices") if isinstance(entry, dict) else [entry]
    if not isinstance(listed, list):
        return space  # the request names what is wrong
    checked = [inputs.weights_file(str(value), "--space") if isinstance(value, str) else value for value in listed]
    return {**space, "weights": {"choices": checked}}


@click.command("sweep-finish")
@click.argument("ref")
@options.as_json
def sweep_finish(ref: str, as_json: bool) -> None:
    """End a sweep early: its queued trials are cancelled, those running finish, then the best trial is scored."""
    from services.dispatcher.submit import send_all
    from shared import jobs
    from shared.celery_app import app
    from shared.db.models import State
    from shared.read_model import get_run

    kind, number = parse_ref(ref)
    if kind != "run" or (run := get_run(number))["kind"] != "sweep":
        raise click.BadParameter(f"{ref} is not a sweep; `dispatch jobs` lists the runs")
    queued = [job for job in run["jobs"] if job["kind"] == "trial" and job["state"] in (State.QUEUED, State.WAITING)]
    for job in queued:
        for task_id in jobs.cancel(job_id=job["id"]).task_ids:
            app.control.revoke(task_id)
    send_all(jobs.release_waiting(number))
    running = sum(1 for job in run["jobs"] if job["kind"] == "trial" and job["state"] == State.RUNNING)
    if as_json:
        emit_json({"ref": f"r{number}", "cancelled_trials": len(queued), "running_trials": running})
    else:
        click.echo(
            f"r{number}: {len(queued)} queued trial(s) cancelled; {running} running finish, then the best trial "
            "is scored on the test split"
        )
