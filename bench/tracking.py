"""`make bench-tracking [SOURCE=path]`: how far MLflow lags behind the jobs, per entry kind, on the local
stack with a 5-fold run and a sweep at once, for each backend of the stack's MLflow:

sqlite           the embedded default: SQLite files in WAL mode, logins cached (the defaults)
sqlite-no-cache  the same with MLFLOW_AUTH_CACHE_SECONDS=0: every request checks the login (as before)
postgresql       the stack's job table on PostgreSQL, and MLflow's runs and logins beside it

The folds are bench/sleep_train.py printing each epoch's figures through the project's trainer's logger,
as nnU-Net's trainer does, an epoch a second; the sweep trains real classifier trials on SOURCE
(checkpoints uploaded, versions registered), which keeps the cores busy. Every process appends, per entry,
the seconds from the job's call to the server's answer (TRACKING_LAG_LOG): MLflow answers after its store
has committed, so that is when the entry can be read through MLflow's API. The server's requests per
second come from its access log. Entries a process could not send before it ended go through the spool
and are not counted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import psycopg

from bench.dispatch import DATASET as FOLDS_DATASET
from bench.dispatch import fake_preprocessed
from bench.stack import PROJECT, dispatch_json, own_stack
from services.tracking_store import beside_job_table, create_databases, database_url

SWEEP_DATASET = 961
KINDS = ("metrics", "tags", "params", "end", "artifact", "timeline", "register")
SPACE = "learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}\nbatch_size: [16]\n"
ACCESS_LINE = re.compile(r"^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) .*\"(GET|POST|PATCH|DELETE|PUT) ")
QUIET_S = 10.0  # the lag logs have not grown for this long: every process has sent what it had


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def lags(lag_log: Path) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    for line in lag_log.read_text().splitlines() if lag_log.exists() else []:
        entry = json.loads(line)
        found.setdefault(entry["kind"], []).append(entry["lag_s"])
    return found


def requests_per_second(access_log: Path, since: float, until: float) -> float:
    """The server's requests in [since, until] over the window's seconds (its access log has whole seconds)."""
    count = 0
    for line in access_log.read_text(errors="replace").splitlines():
        match = ACCESS_LINE.match(line)
        if match:
            moment = datetime.strptime(match.group(1), "%Y/%m/%d %H:%M:%S").timestamp()
            count += since - 1 <= moment <= until + 1
    return count / max(until - since, 1.0)


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A fresh database for the job table (MLflow's two are made beside it by `make up`), dropped after."""
    name = f"fracatlas_bench_{uuid.uuid4().hex[:8]}"
    create_databases(admin_url, [name])
    job_table = database_url(admin_url, name)
    try:
        yield job_table
    finally:
        with psycopg.connect(admin_url, autocommit=True) as connection:
            for database in (name, *beside_job_table(job_table)):
                connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def wait_until_quiet(path: Path) -> None:
    """Until `path` has not grown for QUIET_S."""
    size, still_since = -1, time.monotonic()
    while time.monotonic() - still_since < QUIET_S:
        now = path.stat().st_size if path.exists() else 0
        if now != size:
            size, still_since = now, time.monotonic()
        time.sleep(1)


def one_backend(
    work: Path, source: Path, settings: dict[str, str], epochs: int, trials: int, trial_epochs: int
) -> dict[str, Any]:
    """Ingest SOURCE, then 5 logging folds and a sweep at once; the lags and the server's request rate."""
    data_root = work / "var"
    fake_preprocessed(data_root)
    lag_log = work / "lags.jsonl"
    space = work / "space.yaml"
    space.write_text(SPACE)
    stack_settings = {
        "GPU_WORKERS": "7",  # five folds and two trials at once
        "OMP_NUM_THREADS": "1",
        "NNUNET_TRAIN_COMMAND": str(PROJECT / "bench" / "sleep_train.py"),
        "SLEEP_FOLD_SECONDS": "5",  # an epoch a second: nnU-Net's epochs take longer, so this is harder
        "TRACKING_LAG_LOG": str(lag_log),
        **settings,
    }
    with own_stack(data_root, **stack_settings) as env:
        ingest = dispatch_json(
            env, "ingest", "--source", str(source), "--dataset-id", str(SWEEP_DATASET), "--size", "96", "--wait"
        )
        if ingest.get("state") != "succeeded":
            raise click.ClickException(f"the ingest failed: {ingest.get('error')}")
        started = time.time()
        train = dispatch_json(
            env, "train", "--dataset-id", str(FOLDS_DATASET), "--folds", "0-4", "--epochs", str(epochs)
        )
        sweep = dispatch_json(
            env, "sweep", "--dataset-id", str(SWEEP_DATASET), "--space", str(space), "--sampler", "random",
            "--trials", str(trials), "--epochs", str(trial_epochs), "--pruner", "none", "--wait",
        )  # fmt: skip
        while True:
            folds = [job for job in dispatch_json(env, "show", train["ref"])["jobs"] if job["kind"] == "fold"]
            if all(job["state"] in ("succeeded", "failed", "cancelled") for job in folds):
                break
            time.sleep(1)
        dispatch_json(env, "cancel", train["ref"])  # its evaluation: the stand-in folds have nothing to evaluate
        finished = time.time()
        wait_until_quiet(lag_log)
        rate = requests_per_second(data_root / "logs" / "mlflow.log", started, finished)
    return {
        "lags": lags(lag_log),
        "rate": rate,
        "seconds": finished - started,
        "sweep": sweep.get("state"),
        "folds": sorted({job["state"] for job in folds}),
    }


@click.command()
@click.option("--source", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--postgres", default="postgresql://postgres@127.0.0.1/test", show_default=True,
              help="A PostgreSQL server (trust or a password in the URL) for the PostgreSQL-backed stack.")  # fmt: skip
@click.option("--epochs", default=40, show_default=True, help="Of each fold (an epoch a second).")
@click.option("--trials", default=4, show_default=True)
@click.option("--trial-epochs", default=3, show_default=True)
@click.option("--backends", default="sqlite,sqlite-no-cache,postgresql", show_default=True)
def main(source: Path, postgres: str, epochs: int, trials: int, trial_epochs: int, backends: str) -> None:
    results: dict[str, dict[str, Any]] = {}
    for backend in backends.split(","):
        work = Path(tempfile.mkdtemp(prefix=f"bench-tracking-{backend}-"))
        click.echo(f"{backend}: 5 folds of {epochs} epochs and a sweep of {trials} trials at once ...", err=True)
        try:
            if backend == "postgresql":
                with postgres_database(postgres) as url:
                    results[backend] = one_backend(work, source, {"DATABASE_URL": url}, epochs, trials, trial_epochs)
            else:
                cache = {"MLFLOW_AUTH_CACHE_SECONDS": "0"} if backend == "sqlite-no-cache" else {}
                results[backend] = one_backend(work, source, cache, epochs, trials, trial_epochs)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    click.echo(f"MLflow lag on the local stack, {os.cpu_count()} cores: from a job's call to the entry readable")
    click.echo(f"  {'backend':16} {'entry':9} {'count':>6} {'p50 s':>7} {'p95 s':>7} {'max s':>7}")
    for backend, result in results.items():
        for kind in KINDS:
            values = result["lags"].get(kind, [])
            if values:
                click.echo(
                    f"  {backend:16} {kind:9} {len(values):6d} {statistics.median(values):7.2f} "
                    f"{percentile(values, 0.95):7.2f} {max(values):7.2f}"
                )
        click.echo(
            f"  {backend:16} server: {result['rate']:.1f} requests/s over {result['seconds']:.0f} s; "
            f"folds {','.join(result['folds'])}, sweep {result['sweep']}"
        )


if __name__ == "__main__":
    main()
