"""The ingest as Celery tasks: a plan job fans out convert jobs; assemble waits for them. Each parses the
run's IngestRequest once and hands it to workers/ingest/steps.py."""

from __future__ import annotations

import shutil
from pathlib import Path

from shared import jobs, plans
from shared.contract import IngestRequest
from shared.defaults import SYNTHETIC
from shared.errors import InputError
from shared.settings import get_settings
from shared.tasknames import INGEST_ASSEMBLE, INGEST_CONVERT, INGEST_PLAN
from workers.imaging.pseudonyms import private_key
from workers.ingest.coco import InputCaps
from workers.ingest.steps import assemble, convert_chunk, plan
from workers.ingest.synthetic import synthetic_release
from workers.runtime import JobContext, Outcome, job_task, send_best_effort


def staging_for(run_id: int) -> Path:
    return get_settings().layout.staging(run_id)


def discard_staging(ctx: JobContext) -> None:
    shutil.rmtree(staging_for(ctx.run_id), ignore_errors=True)


@job_task(INGEST_PLAN, cleanup=discard_staging)
def ingest_plan(ctx: JobContext) -> Outcome:
    """Check the release, split it and fan the conversion out in chunks."""
    settings = get_settings()
    request = IngestRequest.parse(ctx.run_params)
    ctx.progress(0, 1, f"reading {request.source}", force=True)
    metrics: dict = {}
    chunks: list[list[int]] = []
    if not jobs.has_job(ctx.run_id, "convert"):  # a re-delivered plan only sends what it made again
        caps = InputCaps.of(settings)
        layout = settings.layout
        release = Path(request.source) if request.source != SYNTHETIC else synthetic_release(layout.synthetic_release)
        derived = (layout.nnunet_preprocessed, layout.nnunet_results)
        staging = staging_for(ctx.run_id)
        key = private_key(layout.private_dir)
        metrics = plan(request, release, staging, layout.nnunet_raw, settings.ingest_chunk_size, caps, derived, key)
        chunks = metrics.pop("chunks")
        ctx.progress(1, 1, metrics["layout"], force=True)
    converts, assemble_job = plans.ingest_fan_out(ctx.stage, chunks)
    for child in jobs.fan_out(ctx.run_id, converts, assemble_job):  # a re-delivery sends them again, once
        send_best_effort(child)
    return Outcome(metrics=metrics)


@job_task(INGEST_CONVERT, cleanup=discard_staging)
def ingest_convert(ctx: JobContext) -> Outcome:
    """Decode one chunk of pictures into nnU-Net cases and a slice of the classification cache."""
    request = IngestRequest.parse(ctx.run_params)
    metrics = convert_chunk(request, staging_for(ctx.run_id), ctx.params["start"], ctx.progress)
    return Outcome(metrics=metrics)


@job_task(INGEST_ASSEMBLE, cleanup=discard_staging)
def ingest_assemble(ctx: JobContext) -> Outcome:
    """Write dataset.json, manifest, split and cache, and rename the dataset into nnUNet_raw."""
    settings, request = get_settings(), IngestRequest.parse(ctx.run_params)
    ctx.progress(0, 1, "assembling", force=True)
    unfinished = jobs.first_unfinished(ctx.run_id, "convert")
    if unfinished is not None:
        job_id, name, state = unfinished
        raise InputError(f"job j{job_id} ({name}) was {state}: the dataset would be incomplete; run the ingest again")
    metrics, artifacts = assemble(request, staging_for(ctx.run_id), settings.layout)
    return Outcome(metrics=metrics, artifacts=artifacts, run_metrics=metrics, run_artifacts=artifacts)
