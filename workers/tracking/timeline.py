"""A run's jobs on a timeline across its workers: the picture its MLflow run ends with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # workers have no display
import matplotlib.pyplot as plt  # noqa: E402

ROW_INCHES, MARGIN_INCHES, DPI = 0.6, 1.6, 110  # the picture grows by a row per worker
STATE_COLOURS = {
    "succeeded": "#2e7d32", "failed": "#c62828", "cancelled": "#f9a825", "running": "#0277bd",
    "handed back": "#8e6fbf", "lost": "#9e9e9e",
}  # fmt: skip


def _time(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


@dataclass(frozen=True)
class Bar:
    """One job's last attempt on its worker's row, in seconds since the run's first job started."""

    label: str
    began: float
    length: float
    state: str


def timeline_rows(run: dict[str, Any]) -> dict[str, list[Bar]]:
    """Worker -> the bars of the jobs it ran, in the order the workers' names sort; a job never started has
    none. A job's earlier attempts (handed back, lost, failed) are bars on their own workers' rows, and a job
    that needed more than one attempt is marked."""
    spans = []  # (worker, label, began, ended or None, state)
    for job in run["jobs"]:
        for earlier in job.get("earlier_attempts") or []:
            if _time(earlier["started_at"]) is not None:
                label = f"{job['name']} (attempt {earlier['attempt']}: {earlier['end']})"
                spans.append((earlier["worker"], label, _time(earlier["started_at"]), _time(earlier["ended_at"]),
                              earlier["end"]))  # fmt: skip
        if _time(job["started_at"]) is not None:
            label = job["name"] + (f" (attempt {job['attempt']})" if job["attempt"] > 1 else "")
            ended = _time(job["finished_at"]) or _time(job["heartbeat_at"])
            spans.append((job["worker"], label, _time(job["started_at"]), ended, job["state"]))
    start = min((span[2] for span in spans), default=0.0)
    rows: dict[str, list[Bar]] = {worker: [] for worker in sorted({span[0] or "?" for span in spans})}
    for worker, label, began, ended, state in spans:
        length = max((ended or began) - began, 0.05)
        rows[worker or "?"].append(Bar(label, began - start, length, state))
    return rows


def timeline_png(run: dict[str, Any], out: Path) -> Path:
    """One row per worker, one bar per job, coloured by state: folds side by side show as bars that overlap
    in time."""
    rows = timeline_rows(run)
    figure, axes = plt.subplots(figsize=(9, ROW_INCHES * len(rows) + MARGIN_INCHES), dpi=DPI)
    for row, bars in enumerate(rows.values()):
        for bar in bars:
            colour = STATE_COLOURS.get(bar.state, "grey")
            axes.barh(row, bar.length, left=bar.began, color=colour, height=0.6, edgecolor="white")
            axes.text(bar.began, row, " " + bar.label, va="center", fontsize=7, color="black")
    axes.set_yticks(range(len(rows)), list(rows))
    axes.set_xlabel("seconds since the run's first job started")
    axes.set_title(f"r{run['id']} {run['kind']}: jobs across workers ({run['state']})")
    axes.invert_yaxis()
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)
    return out
