"""The read model of the job table: runs and jobs as plain dicts for the dispatcher and for tests, and the
runs a new run builds on (the segmentation that feeds a classifier, the classifier a prediction uses)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from shared.contract import BadOption, Experiment, covers_every_fold
from shared.db.engine import session_scope
from shared.db.models import OPEN, Job, Run, State, utcnow
from shared.defaults import IMAGE, IMAGE_SEG
from shared.errors import InputError
from shared.jobs import NotFound


def _iso(value: datetime | None) -> str | None:
    return _aware(value).isoformat(timespec="milliseconds") if value else None


def _aware(value: datetime) -> datetime:
    # SQLite hands timestamps back without their zone; they were written in UTC.
    return value if value.tzinfo else value.replace(tzinfo=utcnow().tzinfo)


def job_dict(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "ref": f"j{job.id}",
        "run_id": job.run_id,
        "kind": job.kind,
        "name": job.name,
        "task": job.task_name,
        "queue": job.queue,
        "state": job.state,
        "attempt": job.attempt,
        "earlier_attempts": job.earlier_attempts or [],
        "celery_task_id": job.celery_task_id,
        "worker": job.worker,
        "gpu": job.gpu,
        "progress": {"step": job.progress_step, "total": job.progress_total, "message": job.progress_message},
        "params": job.params,
        "metrics": job.metrics,
        "artifacts": job.artifacts,
        "error": job.error,
        "heartbeat_at": _iso(job.heartbeat_at),
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "age_s": round((utcnow() - _aware(job.created_at)).total_seconds(), 1),
    }


def run_dict(run: Run, with_jobs: bool = True) -> dict[str, Any]:
    content = {
        "id": run.id,
        "ref": f"r{run.id}",
        "kind": run.kind,
        "state": run.state,
        "params": run.params,
        "metrics": run.metrics,
        "artifacts": run.artifacts,
        "error": run.error,
        "created_at": _iso(run.created_at),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
    }
    if with_jobs:
        content["jobs"] = [job_dict(job) for job in sorted(run.jobs, key=lambda job: (job.stage, job.id))]
        content["progress"] = run_progress(run.jobs)
    return content


def run_progress(jobs: list[Job]) -> dict[str, int]:
    """Steps done over steps known, summed over the run's jobs; a job without a total counts as one step."""
    done = total = 0
    for job in jobs:
        job_total = job.progress_total or 1
        total += job_total
        done += job_total if job.state == State.SUCCEEDED else min(job.progress_step, job_total)
    return {
        "done": done,
        "total": total,
        "jobs_done": sum(1 for j in jobs if j.state == State.SUCCEEDED),
        "jobs": len(jobs),
    }


def get_run(run_id: int) -> dict[str, Any]:
    with session_scope() as session:
        run = session.scalar(select(Run).where(Run.id == run_id).options(selectinload(Run.jobs)))
        if run is None:
            raise NotFound(f"run r{run_id}")
        return run_dict(run)


def get_job(job_id: int) -> dict[str, Any]:
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFound(f"job j{job_id}")
        return job_dict(job)


def list_jobs(run_id: int | None = None, include_finished_runs: bool = False, limit: int = 200) -> list[dict[str, Any]]:
    """Jobs, newest run first; by default only runs that are still open, plus the latest one."""
    with session_scope() as session:
        query = select(Job).order_by(Job.run_id.desc(), Job.stage, Job.id).limit(limit)
        if run_id is not None:
            query = query.where(Job.run_id == run_id)
        elif not include_finished_runs:
            latest = session.scalar(select(Run.id).order_by(Run.id.desc()).limit(1))
            open_runs = select(Run.id).where(Run.state.in_(OPEN))
            query = query.where(Job.run_id.in_(open_runs) | (Job.run_id == latest))
        return [job_dict(job) for job in session.scalars(query)]


IMPORT_KIND = "import"  # `dispatch import`: another site's folds and classifier, installed here
SEGMENTATION_RUN_KINDS = ("train", "pipeline", IMPORT_KIND)


def trained_folds(run_id: int) -> list[int]:
    """The folds that finished training in a run (an import's: those its bundle installed)."""
    with session_scope() as session:
        run = session.get(Run, run_id)
        if run is not None and run.kind == IMPORT_KIND:
            return sorted(run.metrics.get("folds", [])) if run.state == State.SUCCEEDED else []
        jobs = session.scalars(select(Job).where(Job.run_id == run_id, Job.kind == "fold"))
        return sorted(int(job.params["fold"]) for job in jobs if job.state == State.SUCCEEDED)


def trained_segmentation(run_id: int) -> tuple[Experiment, list[int]]:
    """The nnU-Net experiment of a training run and its folds that finished: what a classifier's second
    channel and a prediction run."""
    return Experiment.parse(get_run(run_id)["params"]), trained_folds(run_id)


def latest_succeeded_run(
    kinds: tuple[str, ...], dataset_id: int | None = None, having: Callable[[dict[str, Any]], bool] | None = None
) -> dict[str, Any] | None:
    """The newest succeeded run of one of `kinds` (on `dataset_id`, and for which `having` holds, where
    given), without its jobs."""
    with session_scope() as session:
        runs = session.scalars(
            select(Run).where(Run.kind.in_(kinds), Run.state == State.SUCCEEDED).order_by(Run.id.desc()).limit(500)
        )
        for run in runs:
            if dataset_id is not None and int(run.params.get("dataset_id", 0)) != dataset_id:
                continue
            content = run_dict(run, with_jobs=False)
            if having is None or having(content):
                return content
    return None


@dataclass(frozen=True)
class Segmentation:
    """An nnU-Net training run and the folds of it that finished."""

    run_id: int
    folds: list[int]

    @property
    def complete(self) -> bool:
        """Every fold trained: the run gives out-of-fold maps of every image."""
        return covers_every_fold(self.folds)


def segmentation_run(run_id: int | None, dataset_id: int) -> Segmentation | None:
    """The run that feeds the classifier or a prediction: the one named, else the newest that succeeded."""
    if run_id is None:
        run = latest_succeeded_run(SEGMENTATION_RUN_KINDS, dataset_id)
        return Segmentation(run["id"], trained_folds(run["id"])) if run else None
    if get_run(run_id)["kind"] not in SEGMENTATION_RUN_KINDS:
        raise BadOption(f"r{run_id} is not an nnU-Net training run (dispatch train, pipeline or import)", "--seg-run")
    folds = trained_folds(run_id)
    if not folds:
        raise BadOption(f"no fold of r{run_id} finished training", "--seg-run")
    return Segmentation(run_id, folds)


def classifier_inputs(requested: str, compare: bool, segmentation: Segmentation | None) -> list[str]:
    """The inputs `dispatch classify` trains: as asked, or (auto) image+seg where every fold gives a map."""
    if compare or requested == IMAGE_SEG:
        if segmentation is None:
            raise BadOption(
                "image+seg needs a trained nnU-Net run on this dataset: run `dispatch train` first, name one with "
                "--seg-run, or use --input image",
                "--input",
            )
        return [IMAGE, IMAGE_SEG] if compare else [IMAGE_SEG]
    if requested == IMAGE:
        return [IMAGE]
    return [IMAGE_SEG] if segmentation and segmentation.complete else [IMAGE]


# A sweep's classifier: its best trial; an import's: the bundle's.
CLASSIFIER_RUN_KINDS = ("classify", "pipeline", "sweep", IMPORT_KIND)
CHECKPOINT_PREFIX = "checkpoint "  # a run's artifact "checkpoint <input>": a classifier it trained


@dataclass(frozen=True)
class Classifier:
    """The classifier a prediction uses: its run, its input, its checkpoint and the run whose folds gave
    its map (None for the image input)."""

    run: dict[str, Any]
    input: str
    checkpoint: str
    seg_run: int | None


def _has_classifier(run: dict[str, Any]) -> bool:
    return any(key.startswith(CHECKPOINT_PREFIX) for key in run["artifacts"])


SUPERRES_KIND = "superres"
SUPERRES_MODEL_PREFIX = "model x"  # a sr-train run's artifacts: "model x2", "model x4"


def _has_superres(run: dict[str, Any]) -> bool:
    return any(key.startswith(SUPERRES_MODEL_PREFIX) for key in run["artifacts"])


def superres_models(run_id: int | None) -> dict[int, str]:
    """The networks of a finished sr-train run (the newest, or `run_id`), by scale."""
    if run_id is None:
        run = latest_succeeded_run((SUPERRES_KIND,), having=_has_superres)
        if run is None:
            raise BadOption(
                "no super-resolution network has finished training; run `dispatch sr-train --source RELEASE` first",
                "--upscale",
            )
    else:
        run = get_run(run_id)
        if run["kind"] != SUPERRES_KIND or run["state"] != State.SUCCEEDED or not _has_superres(run):
            raise BadOption(f"r{run_id} is not a finished sr-train run", "--upscale")
    prefix = SUPERRES_MODEL_PREFIX
    return {int(key.removeprefix(prefix)): path for key, path in run["artifacts"].items() if key.startswith(prefix)}


def classifier_for_prediction(run_id: int | None, input: str | None = None) -> Classifier:
    """The run whose classifier to use (a `dispatch classify` run, a pipeline that trained one, or a sweep:
    the newest, or `run_id`) and its checkpoint for `input`, else its best (by validation AUC, where it trained
    two)."""
    if run_id is None:
        run = latest_succeeded_run(CLASSIFIER_RUN_KINDS, having=_has_classifier)
        if run is None:
            raise InputError("no classifier has finished training; run `dispatch classify` first")
    else:
        run = get_run(run_id)
        if run["state"] != State.SUCCEEDED or not _has_classifier(run):
            raise BadOption(f"r{run_id} is not a finished run with a classifier", "--classifier")
    inputs = [key.removeprefix(CHECKPOINT_PREFIX) for key in run["artifacts"] if key.startswith(CHECKPOINT_PREFIX)]
    if input is not None and input not in inputs:
        raise BadOption(f"r{run['id']} trained no classifier on {input}", "--model")
    best = input or max(inputs, key=lambda mode: run["metrics"][f"classifier {mode}"]["best_val_auc"] or 0)
    # A pipeline's classifier took its map from the pipeline's own folds, an imported one from the bundle's.
    seg_run = run["params"].get("seg_run") or (run["id"] if run["kind"] in ("pipeline", IMPORT_KIND) else None)
    return Classifier(run, best, run["artifacts"][CHECKPOINT_PREFIX + best], seg_run)
