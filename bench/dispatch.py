"""`make bench-dispatch`: five sleep-only folds on five gpu-queue workers, against the ideal T.

The folds run bench/sleep_train.py instead of nnUNetv2_train (NNUNET_TRAIN_COMMAND), so the figure is the
job system's own cost: `dispatch train` returning, five messages taken by five workers, five child
processes, progress rows, and the last fold's end.

With `--baseline DIR` (another checkout of the project, an earlier commit say) it then times `dispatch
train` of this checkout and of DIR on the same stack, interleaved, and prints the ratio of the medians.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import click

from bench.stack import PROJECT, dispatch_json, own_stack

DATASET = 950
SETTLE_S = 5  # after `up` returns, workers and Flower finish starting; a user's `dispatch train` comes later
# What `dispatch train` cannot go below: a bare interpreter importing the libraries it sends and records with.
LIBRARIES = "import click, pydantic_settings, sqlalchemy.orm, celery, kombu.transport.redis"


def import_floor(env: dict[str, str]) -> float:
    """The median of three bare interpreters importing LIBRARIES, on this machine, now."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", LIBRARIES], env=env, check=True, cwd=PROJECT)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def time_dispatch(env: dict[str, str], checkout: Path, *args: str) -> float:
    """Seconds for `dispatch ARGS` with `checkout`'s code to return (run as a module: its entry point moved)."""
    entry = (
        "services.dispatcher" if (checkout / "services/dispatcher/__main__.py").exists() else "services.dispatcher.cli"
    )
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", entry, *args],
        env={**env, "PYTHONPATH": str(checkout)},
        cwd=checkout,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise click.ClickException(f"dispatch {' '.join(args)} ({checkout}) failed: {done.stderr.strip()}")
    return elapsed


def compare(env: dict[str, str], baseline: Path, rounds: int) -> None:
    """`dispatch train` and `dispatch --help` of this checkout against `baseline`'s, interleaved."""
    train = ("train", "--dataset-id", str(DATASET), "--folds", "0-4", "--json")
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for label, checkout in (("this", PROJECT), ("baseline", baseline)):
            for command, args in (("train", train), ("--help", ("--help",))):
                times.setdefault((label, command), []).append(time_dispatch(env, checkout, *args))
    click.echo(f"dispatch of this checkout against {baseline}, median of {rounds} interleaved rounds")
    for command in ("train", "--help"):
        this, before = (statistics.median(times[(label, command)]) for label in ("this", "baseline"))
        click.echo(f"  dispatch {command:8} this {this:5.2f} s, baseline {before:5.2f} s, ratio {this / before:4.2f}")


def fake_preprocessed(data_root: Path) -> None:
    """Just enough of a preprocessed dataset for `dispatch train` to accept it."""
    folder = data_root / "nnUNet_preprocessed" / f"Dataset{DATASET}_Bench"
    folder.mkdir(parents=True)
    (folder / "nnUNetPlans.json").write_text(json.dumps({"configurations": {"2d": {}}}))


@click.command()
@click.option("--seconds", default=10.0, show_default=True, help="T: how long each fold sleeps.")
@click.option("--workers", default=5, show_default=True)
@click.option("--baseline", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Another checkout.")
@click.option("--rounds", default=7, show_default=True, help="Rounds of the comparison with --baseline.")
def main(seconds: float, workers: int, baseline: Path | None, rounds: int) -> None:
    data_root = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    fake_preprocessed(data_root)
    settings = {
        "GPU_WORKERS": str(workers),
        "NNUNET_TRAIN_COMMAND": str(PROJECT / "bench" / "sleep_train.py"),
        "SLEEP_FOLD_SECONDS": str(seconds),
    }
    try:
        with own_stack(data_root, **settings) as env:
            time.sleep(SETTLE_S)
            floor = import_floor(env)
            started = time.time()
            run = dispatch_json(env, "train", "--dataset-id", str(DATASET), "--folds", "0-4")
            returned = time.time() - started
            while True:
                folds = [job for job in dispatch_json(env, "show", run["ref"])["jobs"] if job["kind"] == "fold"]
                if all(job["state"] in ("succeeded", "failed", "cancelled") for job in folds):
                    break
                time.sleep(0.2)
            dispatch_json(env, "cancel", run["ref"])  # the evaluation job: nothing to evaluate
            if baseline:
                compare(env, baseline.resolve(), rounds)
    finally:
        shutil.rmtree(data_root, ignore_errors=True)
    ends = [datetime.fromisoformat(job["finished_at"]).timestamp() for job in folds]
    starts = [datetime.fromisoformat(job["started_at"]).timestamp() for job in folds]
    total = max(ends) - started
    click.echo(f"5 folds of T = {seconds:.1f} s on {workers} gpu-queue workers ({os.cpu_count()} cores)")
    click.echo(f"  dispatch train returned in        {returned:6.2f} s   (target < 1 s)")
    click.echo(f"    its libraries' imports alone    {floor:6.2f} s   (a bare interpreter, median of 3)")
    click.echo(f"  first fold started after          {min(starts) - started:6.2f} s")
    click.echo(f"  all folds done after              {total:6.2f} s   (ideal T = {seconds:.1f} s, target T + 2 s)")
    click.echo(
        f"  overhead over T                   {total - seconds:6.2f} s   "
        f"(states: {sorted({job['state'] for job in folds})}, workers: "
        f"{len({job['worker'] for job in folds})})"
    )


if __name__ == "__main__":
    main()
