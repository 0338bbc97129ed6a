"""`dispatch workers`: the workers that answer, and the gpu-queue workers run as SLURM jobs (submitted with
`--slurm N`, listed with SLURM's state, cancelled with `dispatch workers stop`)."""

from __future__ import annotations

from typing import Any

import click

from services.dispatcher import options, render
from services.dispatcher.follow import emit_json


@click.group(invoke_without_command=True)
@click.option("--slurm", "count", type=click.IntRange(1, 256), help="Submit N gpu-queue workers as SLURM jobs.")
@click.option("--partition", help="With --slurm: SLURM's partition (--partition).")
@click.option("--time", "time_limit", help="With --slurm: each job's time limit (24:00:00, 1-00:00:00).")
@click.option("--account", help="With --slurm: the SLURM account charged.")
@click.option("--cpus", type=click.IntRange(1, 512), help="With --slurm: CPUs per worker (nnU-Net's augmentation).")
@click.option("--sbatch-arg", "sbatch_args", multiple=True, help="With --slurm: one more sbatch argument (repeat).")
@click.option(
    "--keep",
    type=click.IntRange(0, 256),
    default=0,
    help="With --slurm: keep N workers queued or running while the gpu queue has work (a worker leaving at its "
    "time limit submits its replacement; an idle one ends).",
)
@click.option(
    "--signal-before",
    type=click.IntRange(10, 3600),
    default=120,
    show_default=True,
    help="With --slurm: seconds before the time limit that SLURM tells the worker to hand its job back.",
)
@click.option(
    "--idle-exit",
    type=click.IntRange(10, 86400),
    default=300,
    show_default=True,
    help="With --keep: a worker with no gpu work for this many seconds ends.",
)
@options.as_json
@click.pass_context
def workers(ctx: click.Context, count: int | None, as_json: bool, **slurm: Any) -> None:
    """Online workers, their queues and GPUs, and the SLURM jobs of the gpu-queue workers; with --slurm N,
    submit N of them (docs/deployment.md, "On a SLURM cluster")."""
    if ctx.invoked_subcommand is not None:
        return
    if count is None:
        given = [name for name, value in slurm.items() if value and name not in ("signal_before", "idle_exit")]
        if given:
            flag = next(param.opts[0] for param in ctx.command.params if param.name == given[0])
            raise click.BadParameter(f"{flag} goes with --slurm N", param_hint="--slurm")
        _list(as_json)
    else:
        _submit(count, as_json, **slurm)


def _submit(count: int, as_json: bool, **slurm: Any) -> None:
    from services.dispatcher.slurm_workers import loopback_services, submit_workers
    from services.slurm.sbatch import WorkerOptions

    wanted = WorkerOptions(
        partition=slurm["partition"],
        time=slurm["time_limit"],
        account=slurm["account"],
        cpus=slurm["cpus"],
        sbatch_args=list(slurm["sbatch_args"]),
        keep=slurm["keep"],
        signal_before=slurm["signal_before"],
        idle_exit=slurm["idle_exit"],
    )
    submitted = submit_workers(count, wanted)
    if as_json:
        emit_json({"slurm_jobs": submitted})
        return
    click.echo(
        f"submitted SLURM job(s) {', '.join(submitted)}: one gpu-queue worker each; `dispatch workers` lists them"
    )
    if loopback := loopback_services():
        click.echo(
            f"note: {' and '.join(loopback)} name this machine by a loopback address; a compute node other than this "
            "one cannot reach it (docs/deployment.md, On a SLURM cluster)"
        )


def _list(as_json: bool) -> None:
    from services.dispatcher.online import online_workers
    from services.dispatcher.slurm_workers import listed

    rows = online_workers()
    slurm_rows = listed()
    if as_json:
        emit_json(_joined(rows, slurm_rows))
        return
    if rows:
        click.echo(render.workers_table(rows))
    if slurm_rows:
        click.echo(("\n" if rows else "") + render.slurm_table(slurm_rows))
    if not rows:
        click.echo("no worker answers; start the stack with `make up`")
        raise SystemExit(1)


def _joined(rows: list[dict[str, Any]], slurm_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The workers that answer, each SLURM one with its job; then the SLURM jobs with no worker answering yet."""
    by_job = {row["slurm_job"]: row for row in slurm_rows}
    joined, seen = [], set()
    for row in rows:
        job = row["worker"].removeprefix("gpu-slurm").split("@")[0] if row["worker"].startswith("gpu-slurm") else None
        joined.append({**row, "slurm": by_job.get(job)})
        seen.add(job)
    empty = {"worker": None, "queues": [], "concurrency": None, "gpu": None, "pid": None}
    return joined + [{**empty, "slurm": row} for job, row in by_job.items() if job not in seen]


@workers.command()
@options.as_json
def stop(as_json: bool) -> None:
    """Cancel every SLURM worker: each hands its running job back to the queue, and none is replaced."""
    from services.dispatcher.slurm_workers import stop_all

    cancelled = stop_all()
    if as_json:
        emit_json({"cancelled": cancelled})
    else:
        click.echo(f"cancelled SLURM job(s) {', '.join(cancelled)}" if cancelled else "no SLURM worker to cancel")
