"""The job table's side of tracking: which MLflow run belongs to which row (`runs.tracking_id`,
`jobs.tracking_id`), made once by a claim (docs/tracking.md), and what the tracking client reads of a row."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from shared.db.engine import session_scope
from shared.db.models import Job, Run
from shared.jobs import NotFound

# A row's tracking id while one process makes its MLflow run: "making:<unix time>:<nonce>".
TRACKING_CLAIM = "making:"


def tracking_ids(run_id: int | None = None, job_id: int | None = None, claims: bool = False) -> str | None:
    """The MLflow run id kept for a run or a job (None: none made yet; with `claims`, also the claim of a
    process making it)."""
    with session_scope() as session:
        if job_id is not None:
            kept = session.scalar(select(Job.tracking_id).where(Job.id == job_id))
        else:
            kept = session.scalar(select(Run.tracking_id).where(Run.id == run_id))
    return kept if claims or not (kept or "").startswith(TRACKING_CLAIM) else None


def claim_tracking_id(
    claim: str, run_id: int | None = None, job_id: int | None = None, stale: str | None = None
) -> str:
    """Keep `claim` as the row's tracking id where it has none (or still holds the abandoned claim
    `stale`); returns the one it holds now (the first wins)."""
    table, key = (Job, job_id) if job_id is not None else (Run, run_id)
    held = table.tracking_id.is_(None) if stale is None else table.tracking_id == stale
    with session_scope() as session:
        session.execute(update(table).where(table.id == key, held).values(tracking_id=claim))
        kept = session.scalar(select(table.tracking_id).where(table.id == key))
        if kept is None:
            raise NotFound(f"{'job j' if job_id is not None else 'run r'}{key}")
        return kept


def settle_tracking_id(claim: str, value: str | None, run_id: int | None = None, job_id: int | None = None) -> None:
    """Replace this process's claim by the MLflow run it made (None: it made none, another may try)."""
    table, key = (Job, job_id) if job_id is not None else (Run, run_id)
    with session_scope() as session:
        session.execute(update(table).where(table.id == key, table.tracking_id == claim).values(tracking_id=value))


def run_for_tracking(run_id: int) -> dict[str, Any]:
    with session_scope() as session:
        run = session.get(Run, run_id)
        if run is None:
            raise NotFound(f"run r{run_id}")
        return {"kind": run.kind, "params": dict(run.params)}


def job_for_tracking(job_id: int) -> dict[str, Any]:
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFound(f"job j{job_id}")
        return {"run_id": job.run_id, "name": job.name, "kind": job.kind, "params": dict(job.params)}


def add_run_artifacts(run_id: int, artifacts: dict[str, Any]) -> None:
    """Merge into the run's artifacts, the row locked (as a finishing job does)."""
    with session_scope() as session:
        run = session.get(Run, run_id, with_for_update=True, populate_existing=True)
        if run is not None:
            run.artifacts = {**run.artifacts, **artifacts}
