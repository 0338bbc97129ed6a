"""The registered models the workers make, and how `dispatch predict --model NAME[@alias]` finds the run
of a version: through MLflow's REST API (the dispatcher loads no MLflow client)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from shared.basic_auth import basic_auth_header
from shared.contract import BadOption
from shared.layout import dataset_name
from shared.redact import redact_url
from shared.settings import get_settings

RUN_TAG, INPUT_TAG = "fracatlas.run", "fracatlas.input"


def nnunet_model_name(dataset_id: int) -> str:
    return f"{dataset_name(dataset_id)}-nnunet"


def classifier_model_name(dataset_id: int) -> str:
    return f"{dataset_name(dataset_id)}-classifier"


def bundle_model_name(dataset_id: int) -> str:
    return f"{dataset_name(dataset_id)}-bundle"


def superres_model_name(dataset_id: int, scale: int) -> str:
    return f"{dataset_name(dataset_id)}-superres-x{scale}"


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    run_id: int  # the job table's run that trained it
    input: str | None  # a classifier's input (image, image+seg)


def _get(path: str, query: dict[str, str]) -> dict[str, Any]:
    settings = get_settings()
    if settings.tracking_uri is None:
        raise BadOption(
            "no MLflow server is configured (MLFLOW_TRACKING_URI); name the run with --classifier", "--model"
        )
    url = f"{settings.tracking_uri.rstrip('/')}/api/2.0/mlflow/{path}?{urllib.parse.urlencode(query)}"
    username, password = settings.tracking_credentials
    request = urllib.request.Request(url, headers=basic_auth_header(f"{username}:{password}") if username else {})
    try:
        with urllib.request.urlopen(request, timeout=settings.tracking_timeout_seconds) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as error:
        if error.code in (400, 404):  # MLflow answers 400 for an unknown alias, 404 for an unknown model
            return {}
        raise BadOption(f"MLflow at {redact_url(settings.tracking_uri)} answered {error.code}", "--model") from None
    except OSError as error:
        raise BadOption(f"cannot reach MLflow at {redact_url(settings.tracking_uri)} ({error})", "--model") from None


def find_version(spec: str) -> ModelVersion:
    """NAME (its newest version), NAME@ALIAS or NAME/VERSION."""
    if "@" in spec:
        name, alias = spec.split("@", 1)
        found = _get("registered-models/alias", {"name": name, "alias": alias}).get("model_version")
    elif "/" in spec:
        name, number = spec.rsplit("/", 1)
        found = _get("model-versions/get", {"name": name, "version": number}).get("model_version")
    else:
        name = spec
        listing = _get("model-versions/search", {"filter": f"name='{name}'", "order_by": "version_number DESC"})
        found = (listing.get("model_versions") or [None])[0]
    if not found:
        raise BadOption(f"{spec}: no such registered model version in MLflow", "--model")
    tags = {tag["key"]: tag["value"] for tag in found.get("tags", [])}
    if RUN_TAG not in tags:
        raise BadOption(f"{spec} was not registered by this system (it has no {RUN_TAG} tag)", "--model")
    return ModelVersion(found["name"], found["version"], int(tags[RUN_TAG].lstrip("r")), tags.get(INPUT_TAG))
