"""Reading back what the workers logged to the stack's MLflow server, as a user would: `MlflowClient`."""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from base64 import b64encode
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from conftest import Stack, wait_for


def mlflow_client(stack: Stack) -> Any:
    url, user, password = (stack.data_root / "stack" / "mlflow_server").read_text().split()
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = user, password
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=url)


def mlflow_run_of(stack: Stack, run: dict, timeout: float = 90) -> Any:
    """The parent MLflow run of a job-table run, once its end has been logged (jobs flush as they end)."""
    client = mlflow_client(stack)

    def ended() -> Any:
        found = client.search_runs(
            [experiment.experiment_id for experiment in client.search_experiments()],
            filter_string=f"tags.`fracatlas.run` = 'r{run['id']}' and tags.`fracatlas.kind` = '{run['kind']}'",
        )
        parents = [item for item in found if "mlflow.parentRunId" not in item.data.tags]
        return parents[0] if parents and parents[0].info.status != "RUNNING" else None

    return wait_for(ended, timeout, f"r{run['id']}'s MLflow run to end")


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
