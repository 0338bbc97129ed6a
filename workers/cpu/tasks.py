"""The ingest as Celery work on the cpu queue: a plan job fans out convert jobs; assemble waits for them."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import select

from shared import jobs
from shared.db.engine import session_scope
from shared.db.models import Job, State
from shared.enqueue import send
from shared.settings import get_settings
from shared.tasknames import INGEST_ASSEMBLE, INGEST_CONVERT, INGEST_PLAN
from workers.cpu.ingest import IngestRequest, assemble, convert_chunk, plan
from workers.runtime import JobContext, Outcome, job_task


def staging_for(run_id: int) -> Path:
    return get_settings().staging_dir / f"run-{run_id}"


def discard_staging(ctx: JobContext) -> None:
    shutil.rmtree(staging_for(ctx.run_id), ignore_errors=True)


def _fan_out(run_id: int, chunks: list[list[int]]) -> list[jobs.JobRef]:
    """Create one convert job per chunk and the waiting assemble job, once per run."""
    with session_scope() as session:
        existing = session.scalars(select(Job).where(Job.run_id == run_id, Job.kind == "convert")).all()
        if existing:  # a re-delivered plan: its children exist; re-send only those not yet taken
            return [jobs.ref(job) for job in existing if job.state == State.QUEUED]
        children = [
            jobs.add_job(
                session,
                run_id,
                "convert",
                f"convert {start}-{stop - 1}",
                INGEST_CONVERT,
                {"start": start, "stop": stop},
            )
            for start, stop in chunks
        ]
        jobs.add_job(session, run_id, "assemble", "assemble dataset", INGEST_ASSEMBLE, state=State.WAITING)
        return [jobs.ref(job) for job in children]


@job_task(INGEST_PLAN, cleanup=discard_staging)
def ingest_plan(ctx: JobContext) -> Outcome:
    """Check the release, split it and fan the conversion out in chunks."""
    settings = get_settings()
    request = IngestRequest(**ctx.run_params)
    ctx.progress(0, 1, f"reading {request.source}", force=True)
    with session_scope() as session:
        planned = session.scalar(select(Job.id).where(Job.run_id == ctx.run_id, Job.kind == "convert"))
    metrics: dict = {}
    chunks: list[list[int]] = []
    if planned is None:
        metrics = plan(request, staging_for(ctx.run_id), settings.nnunet_raw, settings.ingest_chunk_size)
        chunks = metrics.pop("chunks")
    for child in _fan_out(ctx.run_id, chunks):
        send(child)
    return Outcome(metrics=metrics)


@job_task(INGEST_CONVERT, cleanup=discard_staging)
def ingest_convert(ctx: JobContext) -> Outcome:
    """Decode one chunk of pictures into nnU-Net cases and a slice of the classification cache."""
    metrics = convert_chunk(staging_for(ctx.run_id), ctx.params["start"], ctx.params["stop"], ctx.progress)
    return Outcome(metrics=metrics)


@job_task(INGEST_ASSEMBLE, cleanup=discard_staging)
def ingest_assemble(ctx: JobContext) -> Outcome:
    """Write dataset.json, manifest, split and cache, and rename the dataset into nnUNet_raw."""
    settings = get_settings()
    ctx.progress(0, 1, "assembling", force=True)
    metrics, artifacts = assemble(staging_for(ctx.run_id), settings.nnunet_raw, settings.classification_dir)
    return Outcome(metrics=metrics, artifacts=artifacts, run_metrics=metrics, run_artifacts=artifacts)
