"""A job's side of MLflow, as its task and the runtime use it: this attempt's tags, figures per step,
pictures, registered models, the final figures and the end. Every call only queues an entry in the
process's outbox (see outbox.py): nothing here waits on the server. With tracking off
(MLFLOW_TRACKING_URI=none) every call does nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workers.tracking.client import tracking_enabled

STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "cancelled": "KILLED", "pruned": "KILLED"}
NOT_FIGURES = ("request", "fold")  # a job's metrics may repeat its request: those are params already


def tag_figure(value: float | None) -> str:
    """A figure as a registered version's tag: four decimals, or '-' where there is none."""
    return "-" if value is None else f"{value:.4f}"


def numeric(values: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of a metrics dict, nested keys joined with '/': what MLflow can chart."""
    found: dict[str, float] = {}
    for key, value in values.items():
        if key in NOT_FIGURES:
            continue
        name = f"{prefix}{key}".replace(" ", "_").replace("+", "_")
        if isinstance(value, dict):
            found.update(numeric(value, f"{name}/"))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            found[name] = float(value)
    return found


class JobTracking:
    def __init__(self, job_id: int, run_id: int, attempt: int, worker: str, gpu: str | None) -> None:
        self.job_id, self.run_id = job_id, run_id
        self.outbox = None
        if tracking_enabled():
            from workers.tracking.outbox import process_outbox

            self.outbox = process_outbox()
            self._put("tags", tags={"worker": worker, "gpu": gpu or "-", "attempt": attempt})

    @property
    def enabled(self) -> bool:
        return self.outbox is not None

    def _put(self, kind: str, on_run: bool = False, **entry: Any) -> None:
        if self.outbox is not None:
            self.outbox.put({"kind": kind, "job": None if on_run else self.job_id, "run": self.run_id, **entry})

    def metrics(
        self, values: dict[str, Any], step: int | None = None, on_run: bool = False, at_ms: int | None = None
    ) -> None:
        """`at_ms`: when the figures were taken (default: now)."""
        import time

        now = at_ms if at_ms is not None else int(time.time() * 1000)
        found = numeric(values)
        if found:
            self._put("metrics", on_run, values=[[key, value, now, step] for key, value in found.items()])

    def params(self, values: dict[str, Any]) -> None:
        """Parameters the job learns as it runs (a trial's settings, asked of its study)."""
        self._put("params", values=values)

    def artifact(self, path: str | Path, folder: str | None = None, on_run: bool = False) -> None:
        self._put("artifact", on_run, path=str(path), folder=folder)

    def register(self, model: str, artifact: str, tags: dict[str, str], description: str = "") -> None:
        """A version of `model` from this job's artifact folder `artifact` (logged before)."""
        self._put("register", model=model, artifact=artifact, tags=tags, description=description)

    def finish(self, state: str, run: dict[str, Any] | None = None) -> None:
        """End the job's run in `state`; with `run` (the run, ended now), also its timeline and its end. The
        timeline is drawn by the bulk lane, not here: matplotlib's first import and a figure are a second of
        CPU that the job's worker would otherwise spend before taking its next job."""
        self._put("end", status=STATUS.get(state, "FINISHED"))
        if run is not None and run["state"] in STATUS:
            self._put("timeline", on_run=True)
            self._put("end", on_run=True, status=STATUS[run["state"]])
