"""`make bench-sweep [SOURCE=path] [SWEEP_WORKERS=2]`: what running a sweep's trials side by side gains, and
what pruning saves, measured in one run on this machine.

warm-up     one short trial per worker, not counted (each pool process loads torch on its first job)
one trial   a sweep of one trial of fixed settings (its job's own time, T1)
k workers   a sweep of TRIALS trials of the same settings: their wall time against ceil(TRIALS / k) x T1
pruned      TRIALS trials over a learning rate and batch size space, without and with the median pruner
            (the same seed, so the same settings): wall time and epochs run
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from bench.stack import dispatch_json, own_stack

BENCH_DATASET = 411
FIXED = "learning_rate: 1.0e-3\nbatch_size: 32\n"  # every trial the same work: a clean parallel ratio
# Settings that matter to the AUC, so that the median pruner has slow and fast learners to tell apart.
SEARCHED = "learning_rate: {low: 1.0e-5, high: 3.0e-2, log: true}\nbatch_size: [16, 32]\n"


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def trials_wall_s(run: dict[str, Any]) -> float:
    """From the first trial's start to the last trial's end."""
    trials = [job for job in run["jobs"] if job["kind"] == "trial" and job["started_at"]]
    return (max(_time(j["finished_at"]) for j in trials) - min(_time(j["started_at"]) for j in trials)).total_seconds()


def sweep(env: dict[str, str], space: Path, dataset_id: int, trials: int, epochs: int, pruner: str) -> dict[str, Any]:
    run = dispatch_json(
        env, "sweep", "--dataset-id", str(dataset_id), "--space", str(space), "--sampler", "random",
        "--trials", str(trials), "--epochs", str(epochs), "--patience", str(epochs), "--pruner", pruner,
        "--warmup-epochs", "1", "--seed", "3", "--wait",
    )  # fmt: skip
    if run.get("state") != "succeeded":
        raise click.ClickException(f"sweep {run.get('ref')} {run.get('state')}: {run.get('error')}")
    return run


def measure(env: dict[str, str], dataset_id: int, trials: int, epochs: int, workers: int, work: Path) -> None:
    fixed, searched = work / "fixed.yaml", work / "searched.yaml"
    fixed.write_text(FIXED)
    searched.write_text(SEARCHED)
    sweep(env, fixed, dataset_id, workers, 1, "none")
    one = sweep(env, fixed, dataset_id, 1, epochs, "none")
    (trial,) = (job for job in one["jobs"] if job["kind"] == "trial")
    t1 = (_time(trial["finished_at"]) - _time(trial["started_at"])).total_seconds()
    side_by_side = trials_wall_s(sweep(env, fixed, dataset_id, trials, epochs, "none"))
    ideal = math.ceil(trials / workers) * t1
    full = sweep(env, searched, dataset_id, trials, epochs, "none")
    pruned = sweep(env, searched, dataset_id, trials, epochs, "median")
    wall, wall_pruned = trials_wall_s(full), trials_wall_s(pruned)

    def epochs_run(run: dict[str, Any]) -> int:
        return sum(job["metrics"].get("epochs_run", 0) for job in run["jobs"] if job["kind"] == "trial")

    states = [job["state"] for job in pruned["jobs"] if job["kind"] == "trial"]
    click.echo(f"{trials} trials of {epochs} epochs on {workers} gpu-queue worker(s), dataset {dataset_id}:")
    click.echo(f"  one trial alone (its job)                            {t1:8.1f} s")
    click.echo(f"  {trials} such trials (first start to last end)             {side_by_side:8.1f} s")
    click.echo(f"  ideal: ceil({trials}/{workers}) x one trial                         {ideal:8.1f} s")
    click.echo(f"  ratio to ideal (1.00: side by side costs nothing)    {side_by_side / ideal:8.2f}")
    click.echo(f"  {trials} searched trials, no pruner                        {wall:8.1f} s")
    click.echo(f"  {trials} searched trials, median pruner                    {wall_pruned:8.1f} s")
    click.echo(
        f"  pruning: {states.count('pruned')} of {trials} trials pruned, epochs {epochs_run(pruned)} of "
        f"{epochs_run(full)}, time ratio {wall_pruned / wall:.2f} (saved {1 - wall_pruned / wall:.0%})"
    )
    best, best_pruned = full["metrics"]["best"], pruned["metrics"]["best"]
    click.echo(
        f"  best val AUC: {best['val_auc']:.3f} unpruned, {best_pruned['val_auc']:.3f} pruned "
        f"(its test ROC AUC {best['test']['roc_auc']:.3f} / {best_pruned['test']['roc_auc']:.3f})"
    )


@click.command()
@click.option("--source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--dataset-id", type=int, help="An ingested dataset on the running stack [default: ingest SOURCE].")
@click.option("--size", default=64, show_default=True, help="Ingest size for SOURCE.")
@click.option("--trials", default=6, show_default=True)
@click.option("--epochs", default=6, show_default=True)
@click.option("--workers", default=2, show_default=True, help="gpu-queue workers of the bench's own stack.")
def main(source: Path | None, dataset_id: int | None, size: int, trials: int, epochs: int, workers: int) -> None:
    """Without --dataset-id: a stack of its own (SQLite, no tracking) with SOURCE ingested at --size."""
    work = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    try:
        if dataset_id is None:
            if source is None:
                raise click.UsageError("give --source (a release) or --dataset-id (on the running stack)")
            threads = str(max(1, (os.cpu_count() or 1) // workers))
            settings = {"GPU_WORKERS": str(workers), "MLFLOW_TRACKING_URI": "none", "OMP_NUM_THREADS": threads}
            with own_stack(work / "var", **settings) as env:
                ingest = dispatch_json(
                    env, "ingest", "--source", str(source), "--dataset-id", str(BENCH_DATASET), "--size", str(size),
                    "--wait",
                )  # fmt: skip
                if ingest.get("state") != "succeeded":
                    raise click.ClickException(f"ingest failed: {ingest.get('error')}")
                measure(env, BENCH_DATASET, trials, epochs, workers, work)
        else:
            gpus = os.environ.get("GPU_WORKERS") or str(workers)
            measure(dict(os.environ), dataset_id, trials, epochs, int(gpus), work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
