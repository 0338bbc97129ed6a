"""The `dispatch` command. Heavy imports stay inside the commands so that `--help` answers at once."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from services.dispatcher import render
from services.dispatcher.refs import parse_ref

WAIT_POLL_S = 0.2


def _emit_json(content: Any) -> None:
    click.echo(json.dumps(content, indent=2, default=str))


def _wait(run_id: int, as_json: bool) -> dict[str, Any]:
    """Follow a run until it ends, drawing one live line on a terminal (stderr)."""
    from shared.views import get_run

    live = sys.stderr.isatty() and not as_json
    last = ""
    while True:
        run = get_run(run_id)
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
        time.sleep(WAIT_POLL_S)


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


def _enqueue_ingest(params: dict[str, Any], wait: bool, as_json: bool) -> None:
    from services.dispatcher.submit import submit
    from shared.tasknames import INGEST_PLAN

    run_id = submit("ingest", params, "plan", "plan ingest", INGEST_PLAN)
    if wait:
        _warn_if_no_workers(as_json)
    _finish(run_id, wait, as_json)


class DispatchGroup(click.Group):
    """Turns the system's expected failures into one clear line and a non-zero exit, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from shared.jobs import NotFound

        try:
            return super().invoke(ctx)
        except NotFound as error:
            raise click.ClickException(
                f"no {error.args[0]} in the job table; `dispatch jobs --all` lists them"
            ) from error
        except click.ClickException:
            raise
        except Exception as error:
            name = type(error).__name__
            if name in ("BrokerUnreachable",):
                raise click.ClickException(str(error)) from error
            if name in ("OperationalError", "InterfaceError") and "sqlalchemy" in type(error).__module__:
                from shared.settings import get_settings

                raise click.ClickException(
                    f"cannot use the job table at {get_settings().db_url} ({error.orig}); "
                    "check DATABASE_URL, or run `make up`"
                ) from error
            raise


@click.group(cls=DispatchGroup)
def main() -> None:
    """Fracture segmentation and classification jobs on Celery workers.

    Runs are r<N>, jobs are j<N>. Settings come from the environment (DATA_ROOT, DATABASE_URL, BROKER_URL).
    """


wait_option = click.option("--wait", is_flag=True, help="Follow the run until it ends; exit 1 if it fails.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print a machine-readable object.")


def ingest_options(function: Any) -> Any:
    for option in reversed(
        [
            click.option(
                "--dataset-id",
                default=921,
                show_default=True,
                type=click.IntRange(1, 999),
                help="nnU-Net dataset id: writes nnUNet_raw/Dataset<ID>_FracAtlas.",
            ),
            click.option("--size", default=224, show_default=True, type=int, help="Output width and height."),
            click.option(
                "--test-fraction",
                default=0.2,
                show_default=True,
                type=float,
                help="Share of fractured cases held out as imagesTs (stratified split).",
            ),
            click.option("--seed", default=0, show_default=True, type=int, help="Seed of the split."),
            click.option(
                "--split",
                type=click.Choice(["stratified", "official"]),
                default="stratified",
                show_default=True,
                help="Seeded stratified split, or the release's Utilities/Fracture Split.",
            ),
            click.option("--overwrite", is_flag=True, help="Replace an existing dataset with this id."),
            wait_option,
            json_option,
        ]
    ):
        function = option(function)
    return function


@main.command()
@click.option(
    "--source",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The unpacked FracAtlas release (holds images/, Annotations/, dataset.csv).",
)
@ingest_options
def ingest(source: Path, wait: bool, as_json: bool, **params: Any) -> None:
    """Convert a FracAtlas release into an nnU-Net raw dataset and a classification cache."""
    if not source.expanduser().is_dir():
        raise click.BadParameter(
            f"{source} is not a folder; pass the unpacked FracAtlas release", param_hint="--source"
        )
    _enqueue_ingest({"source": str(source.expanduser().resolve()), **params}, wait, as_json)


@main.command()
@click.option(
    "--source",
    default="synthetic",
    show_default=True,
    help="'synthetic' builds a small release under DATA_ROOT; or a release folder.",
)
@ingest_options
def demo(source: str, wait: bool, as_json: bool, **params: Any) -> None:
    """The demo pipeline: ingest a synthetic (or given) release."""
    from shared.settings import get_settings

    if source == "synthetic":
        from workers.cpu.synthetic import make_synthetic_release

        folder = get_settings().root / "synthetic" / "FracAtlas"
        if not (folder / "dataset.csv").exists():
            make_synthetic_release(folder)
        source_path = folder
    else:
        source_path = Path(source).expanduser()
        if not source_path.is_dir():
            raise click.BadParameter(f"{source} is not a folder", param_hint="--source")
    _enqueue_ingest({"source": str(source_path.resolve()), **params}, wait, as_json)


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
    from shared import jobs
    from shared.celery_app import app

    kind, number = parse_ref(ref)
    result = jobs.cancel(run_id=number) if kind == "run" else jobs.cancel(job_id=number)
    for task_id in result.task_ids:
        app.control.revoke(task_id)
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
