"""Reading back what the workers logged to the stack's MLflow server, as a user would: `MlflowClient`."""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from conftest import Stack, wait_for

from workers.tracking.outbox import RETRY_AFTER_S


def mlflow_client(stack: Stack) -> Any:
    url, user, password = (stack.data_root / "stack" / "mlflow_server").read_text().split()
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = user, password
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=url)


# How long the workers' sending may stand still while a test waits on MLflow: a lane that met an error tries
# again after RETRY_AFTER_S, and a request gives up after TRACKING_TIMEOUT_SECONDS (10 s).
SENDING_STALL_S = 2 * (RETRY_AFTER_S + 10)


def sending(stack: Stack) -> int:
    """How much the stack's workers have sent to MLflow so far (their TRACKING_LAG_LOG)."""
    sent = Path(stack.env["TRACKING_LAG_LOG"])
    return sent.stat().st_size if sent.exists() else 0


def wait_for_mlflow(stack: Stack, condition: Callable[[], Any], what: str) -> Any:
    """Wait for MLflow to show something, for as long as the workers go on sending."""
    return wait_for(condition, SENDING_STALL_S, what, progress=lambda: sending(stack))


def mlflow_run_of(stack: Stack, run: dict) -> Any:
    """The parent MLflow run of a job-table run, once its end has been logged (jobs flush as they end)."""
    client = mlflow_client(stack)

    def ended() -> Any:
        found = client.search_runs(
            [experiment.experiment_id for experiment in client.search_experiments()],
            filter_string=f"tags.`fracatlas.run` = 'r{run['id']}' and tags.`fracatlas.kind` = '{run['kind']}'",
        )
        parents = [item for item in found if "mlflow.parentRunId" not in item.data.tags]
        return parents[0] if parents and parents[0].info.status != "RUNNING" else None

    return wait_for_mlflow(stack, ended, f"r{run['id']}'s MLflow run to end")


def nested_runs(stack: Stack, parent: Any) -> dict[str, Any]:
    """The job runs under a parent MLflow run, by job name."""
    client = mlflow_client(stack)
    found = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    return {item.info.run_name: item for item in found}


def steps(stack: Stack, run_id: str, key: str) -> list[int]:
    return sorted(point.step for point in mlflow_client(stack).get_metric_history(run_id, key))


def artifact_paths(stack: Stack, run_id: str, folder: str = "") -> list[str]:
    client = mlflow_client(stack)
    paths = []
    for item in client.list_artifacts(run_id, folder or None):
        paths.extend(artifact_paths(stack, run_id, item.path) if item.is_dir else [item.path])
    return paths


def download_png(stack: Stack, run_id: str, path: str, into: Path) -> Path:
    """A logged picture, fetched from the server; it must open as a PNG."""
    from PIL import Image

    local = Path(mlflow_client(stack).download_artifacts(run_id, path, str(into)))
    with Image.open(local) as picture:
        assert picture.format == "PNG" and picture.size[0] > 100, path
    return local


def logged_in_door(stack: Stack) -> ThreadingHTTPServer:
    """A local door to the stack's MLflow for a browser, logged in: it forwards every request with the
    basic-auth header added (a URL with the password in it cannot make the page's own requests)."""
    url, user, password = (stack.data_root / "stack" / "mlflow_server").read_text().split()
    token = "Basic " + b64encode(f"{user}:{password}".encode()).decode()
    dropped = ("host", "authorization", "origin", "referer")

    class Forward(BaseHTTPRequestHandler):
        def forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            headers = {key: value for key, value in self.headers.items() if key.lower() not in dropped}
            body = self.rfile.read(length) if length else None
            request = urllib.request.Request(
                url + self.path, body, {**headers, "Authorization": token}, method=self.command
            )
            try:
                answer = urllib.request.urlopen(request, timeout=60)
            except urllib.error.HTTPError as error:
                answer = error
            content = answer.read()
            self.send_response(answer.status)
            for key, value in answer.headers.items():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = do_PATCH = do_DELETE = forward

        def log_message(self, *args: object) -> None:
            pass

    door = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    threading.Thread(target=door.serve_forever, daemon=True).start()
    return door


def uploaded(stack: Stack, run_id: str, paths: set[str], folder: str = "") -> list[str]:
    """The run's artifact paths once `paths` are among them: uploads go in a lane of their own, after the
    figures and the run's end (workers/tracking/outbox.py)."""
    return wait_for_mlflow(
        stack,
        lambda: (found := artifact_paths(stack, run_id, folder)) and paths <= set(found) and found,
        f"{sorted(paths)} uploaded to MLflow run {run_id}",
    )


def versions_of(stack: Stack, model: str, run_ref: str, count: int = 1) -> list[Any]:
    """The registered versions of `model` that run `run_ref` made, once there are `count`."""

    def made() -> list[Any] | None:
        found = mlflow_client(stack).search_model_versions(f"name='{model}'")
        mine = [version for version in found if version.tags.get("fracatlas.run") == run_ref]
        return mine if len(mine) >= count else None

    return wait_for_mlflow(stack, made, f"{count} version(s) of {model} from {run_ref}")
