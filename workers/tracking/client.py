"""MLflow as the workers use it: the light client over HTTP, one experiment per dataset, one MLflow run
per run of the job table and one nested run per job, created the first time something is logged for them.

Which MLflow run belongs to which row is kept in the job table (`runs.tracking_id`, `jobs.tracking_id`),
written with a guarded UPDATE: two folds that start together make one parent run, and a resumed fold logs
on into its own run. The client never retries on its own (the outbox does, in the background) and gives
up on a request after a few seconds: tracking never holds a job up.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from shared import jobs
from shared.defaults import DEFAULT_DATASET_ID
from shared.layout import dataset_name
from shared.settings import get_settings

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


def run_tracking_id(run_id: int) -> str:
    """The MLflow run of a job-table run: its request as params, made once."""
    known = jobs.tracking_ids(run_id=run_id)
    if known:
        return known
    row = jobs.run_for_tracking(run_id)
    created = client().create_run(
        experiment_id(int(row["params"].get("dataset_id") or DEFAULT_DATASET_ID)),
        run_name=f"r{run_id} {row['kind']}",
        tags={RUN_TAG: f"r{run_id}", "fracatlas.kind": row["kind"], PROJECT_VERSION_TAG: project_version()},
    )
    mlflow_id = created.info.run_id
    kept = _keep_first(mlflow_id, run_id=run_id)
    if kept != mlflow_id:
        return kept
    log_params(mlflow_id, row["params"])
    link = f"{get_settings().tracking_ui_url.rstrip('/')}/#/experiments/{created.info.experiment_id}/runs/{mlflow_id}"
    jobs.add_run_artifacts(run_id, {"mlflow": link})
    return mlflow_id


def job_tracking_id(job_id: int) -> str:
    """The nested MLflow run of a job: its parameters, worker, GPU and attempt; made once, kept across attempts."""
    known = jobs.tracking_ids(job_id=job_id)
    if known:
        return known
    row = jobs.job_for_tracking(job_id)
    parent = run_tracking_id(row["run_id"])
    experiment = client().get_run(parent).info.experiment_id
    created = client().create_run(
        experiment,
        run_name=row["name"],
        tags={
            "mlflow.parentRunId": parent,
            RUN_TAG: f"r{row['run_id']}",
            JOB_TAG: f"j{job_id}",
            "fracatlas.kind": row["kind"],
            PROJECT_VERSION_TAG: project_version(),
        },
    )
    mlflow_id = created.info.run_id
    kept = _keep_first(mlflow_id, job_id=job_id)
    if kept != mlflow_id:
        return kept
    log_params(mlflow_id, row["params"])
    return mlflow_id


def _keep_first(mlflow_id: str, run_id: int | None = None, job_id: int | None = None) -> str:
    """Keep `mlflow_id` for the row unless another process kept one first: then ours is deleted and
    theirs returned (two folds starting together make one parent run)."""
    kept = jobs.set_tracking_id(mlflow_id, run_id=run_id, job_id=job_id)
    if kept != mlflow_id:
        client().delete_run(mlflow_id)
    return kept


def log_params(mlflow_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    flat = flat_params(params)
    items = [Param(key, value) for key, value in flat.items()]
    for start in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
        client().log_batch(mlflow_id, params=items[start : start + 100])
