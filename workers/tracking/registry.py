"""Model versions in MLflow's registry: the nnU-Net fold set of a training run and each classifier."""

from __future__ import annotations

from typing import Any

from workers.tracking.client import client


def register(target: str, entry: dict[str, Any]) -> None:
    """A version of `entry["model"]` from the artifact folder `entry["artifact"]` of MLflow run `target`;
    once per run (a replayed entry finds its version made)."""
    from mlflow.exceptions import MlflowException

    name = entry["model"]
    if client().search_model_versions(f"name='{name}' and run_id='{target}'"):
        return
    try:
        client().create_registered_model(name, description=entry.get("description", ""))
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    client().create_model_version(
        name, f"runs:/{target}/{entry['artifact']}", run_id=target, tags=entry.get("tags", {})
    )
