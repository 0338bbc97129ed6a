"""MLflow as the workers use it: the light client over HTTP, one experiment per dataset, one MLflow run
per run of the job table and one nested run per job, created the first time something is logged for them.

Which MLflow run belongs to which row is kept in the job table (`runs.tracking_id`, `jobs.tracking_id`),
written with a guarded UPDATE: two folds that start together make one parent run, and a resumed fold logs
on into its own run. The client never retries on its own (the outbox does, in the background) and gives
up on a request after a few seconds: tracking never holds a job up.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from shared.defaults import DEFAULT_DATASET_ID
from shared.layout import dataset_name
from shared.settings import get_settings
from workers.tracking import rows

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

PROJECT_VERSION_TAG = "fracatlas.version"
RUN_TAG, JOB_TAG = "fracatlas.run", "fracatlas.job"
PARAM_VALUE_LIMIT = 500  # MLflow keeps 6000 characters; a predict run's file list is cut shorter still


def tracking_enabled() -> bool:
    return get_settings().tracking_uri is not None


@lru_cache
def client() -> MlflowClient:
    settings = get_settings()
    # Fail fast: the outbox tries again later. (MLflow's default is seven retries with backoff.)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(int(settings.tracking_timeout_seconds))
    # Ending a run would otherwise read it back to print its address: a request per job's end for nothing.
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    username, password = settings.tracking_credentials
    if username:
        os.environ["MLFLOW_TRACKING_USERNAME"] = username
        os.environ["MLFLOW_TRACKING_PASSWORD"] = password
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=settings.tracking_uri)


def project_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fracatlas-jobs")
    except PackageNotFoundError:
        return "unknown"


@lru_cache
def experiment_id(dataset_id: int) -> str:
    """The experiment of a dataset ("FracAtlas Dataset921_FracAtlas"), made the first time."""
    from mlflow.exceptions import MlflowException

    name = f"FracAtlas {dataset_name(dataset_id)}"
    found = client().get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client().create_experiment(name)
    except MlflowException:  # another worker made it first
        found = client().get_experiment_by_name(name)
        assert found is not None
        return found.experiment_id


def flat_params(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(flat_params(value, f"{prefix}{key}."))
        elif value is not None:
            text = str(value)
            flat[f"{prefix}{key}"] = text if len(text) <= PARAM_VALUE_LIMIT else text[: PARAM_VALUE_LIMIT - 3] + "..."
    return flat


@lru_cache
def run_experiment_id(run_id: int) -> str:
    """The experiment of a job-table run (its dataset's); a run's dataset never changes."""
    return experiment_id(int(rows.run_for_tracking(run_id)["params"].get("dataset_id") or DEFAULT_DATASET_ID))


def run_tracking_id(run_id: int) -> str:
    """The MLflow run of a job-table run: its request as params, made once."""

    def make() -> str:
        row = rows.run_for_tracking(run_id)
        experiment = run_experiment_id(run_id)
        created = client().create_run(
            experiment,
            run_name=f"r{run_id} {row['kind']}",
            tags={RUN_TAG: f"r{run_id}", "fracatlas.kind": row["kind"], PROJECT_VERSION_TAG: project_version()},
        )
        log_params(created.info.run_id, row["params"])
        link = f"{get_settings().tracking_ui_url.rstrip('/')}/#/experiments/{experiment}/runs/{created.info.run_id}"
        rows.add_run_artifacts(run_id, {"mlflow": link})
        return created.info.run_id

    return _made_once(make, run_id=run_id)


def job_tracking_id(job_id: int) -> tuple[str, dict[str, str]]:
    """The nested MLflow run of a job, made once and kept across attempts, and the job's parameters when
    this call made it (else none): they are not logged here, the sender adds them to the run's first batch."""
    params: dict[str, str] = {}

    def make() -> str:
        row = rows.job_for_tracking(job_id)
        created = client().create_run(
            run_experiment_id(row["run_id"]),
            run_name=row["name"],
            tags={
                "mlflow.parentRunId": run_tracking_id(row["run_id"]),
                RUN_TAG: f"r{row['run_id']}",
                JOB_TAG: f"j{job_id}",
                "fracatlas.kind": row["kind"],
                PROJECT_VERSION_TAG: project_version(),
            },
        )
        params.update(flat_params(row["params"]))
        return created.info.run_id

    return _made_once(make, job_id=job_id), params


def _made_once(make: Callable[[], str], run_id: int | None = None, job_id: int | None = None) -> str:
    """The MLflow run of a row, made by one process: the first to claim the row (a guarded UPDATE of its
    tracking id) makes it, the others read it once made. Five folds starting together, each with its
    nnU-Net process, would otherwise make ten parent runs and delete nine, on a server busy enough already.
    A claim older than a maker's requests can take (its process died making it) is taken over."""
    stale_after = 6 * get_settings().tracking_timeout_seconds
    claim = f"{rows.TRACKING_CLAIM}{time.time():.0f}:{uuid.uuid4().hex[:8]}"
    kept = rows.claim_tracking_id(claim, run_id=run_id, job_id=job_id)
    while kept.startswith(rows.TRACKING_CLAIM) and kept != claim:
        if time.time() - float(kept.split(":")[1]) > stale_after:
            kept = rows.claim_tracking_id(claim, run_id=run_id, job_id=job_id, stale=kept)
        else:
            time.sleep(0.2)
            kept = rows.tracking_ids(run_id=run_id, job_id=job_id, claims=True) or ""
            if not kept:  # its maker failed and gave the row back
                kept = rows.claim_tracking_id(claim, run_id=run_id, job_id=job_id)
    if kept != claim:
        return kept
    try:
        made = make()
    except BaseException:
        rows.settle_tracking_id(claim, None, run_id=run_id, job_id=job_id)
        raise
    rows.settle_tracking_id(claim, made, run_id=run_id, job_id=job_id)
    return made


def log_params(mlflow_id: str, params: dict[str, Any]) -> None:
    log_batch(mlflow_id, params=flat_params(params))


def log_batch(
    mlflow_id: str,
    metrics: list[Any] | None = None,
    params: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
) -> None:
    """Figures, params and tags of one MLflow run in as few requests as MLflow takes (at most 1000
    figures, 100 params and 100 tags a request)."""
    from mlflow.entities import Param, RunTag

    metrics = metrics or []
    param_items = [Param(key, value) for key, value in (params or {}).items()]
    tag_items = [RunTag(key, str(value)) for key, value in (tags or {}).items()]
    requests = max(
        1, math.ceil(len(metrics) / 1000), math.ceil(len(param_items) / 100), math.ceil(len(tag_items) / 100)
    )
    for index in range(requests):
        client().log_batch(
            mlflow_id,
            metrics=metrics[index * 1000 : (index + 1) * 1000],
            params=param_items[index * 100 : (index + 1) * 100],
            tags=tag_items[index * 100 : (index + 1) * 100],
        )
