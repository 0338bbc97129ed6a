"""The jobs of each kind of run and the order of their stages, in one place.

A job of stage N waits until every job of the earlier stages has ended (shared/jobs.py releases it). The
ingest fans out: its plan job (stage s) adds its convert jobs (s + 1) and the assemble job (s + 2) once
it has read the release, so a plan that follows an ingest leaves INGEST_STAGES stages to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.contract import (
    ClassifyRequest,
    EvaluateRequest,
    ExportRequest,
    ImportRequest,
    PipelineRequest,
    SuperResRequest,
    SweepRequest,
    TrainRequest,
    covers_every_fold,
)
from shared.defaults import BACKBONE_NAMES, IMAGE, IMAGE_SEG
from shared.jobs import JobSpec
from shared.search_space import choices
from shared.tasknames import (
    CLASSIFY_CHANNEL,
    CLASSIFY_PREDICT,
    CLASSIFY_TRAIN,
    EVALUATE_COHORT,
    INGEST_ASSEMBLE,
    INGEST_CONVERT,
    INGEST_PLAN,
    NNUNET_EVALUATE,
    NNUNET_PREPROCESS,
    NNUNET_TRAIN_FOLD,
    PREDICT_EXPORT,
    PREDICT_IMPORT,
    PREDICT_RANK,
    SUPERRES_TRAIN,
    SWEEP_FINISH,
    SWEEP_TRIAL,
)

INGEST_STAGES = 3  # plan, convert, assemble


def next_stage(specs: list[JobSpec]) -> int:
    return max(spec.stage for spec in specs) + 1


def ingest(first: int = 0) -> list[JobSpec]:
    return [JobSpec("plan", "plan ingest", INGEST_PLAN, stage=first)]


def ingest_fan_out(plan_stage: int, chunks: list[list[int]]) -> tuple[list[JobSpec], JobSpec]:
    """What an ingest's plan job adds: one convert job per chunk of pictures, then the assemble job."""
    converts = [
        JobSpec(
            "convert", f"convert {start}-{stop - 1}", INGEST_CONVERT, {"start": start, "stop": stop}, plan_stage + 1
        )
        for start, stop in chunks
    ]
    return converts, JobSpec("assemble", "assemble dataset", INGEST_ASSEMBLE, stage=plan_stage + 2)


def preprocess(first: int = 0) -> list[JobSpec]:
    return [JobSpec("preprocess", "nnU-Net plan + preprocess", NNUNET_PREPROCESS, stage=first)]


def train(request: TrainRequest, first: int = 0) -> list[JobSpec]:
    """The folds side by side, then the ensemble's evaluation."""
    folds = [JobSpec("fold", f"fold {fold}", NNUNET_TRAIN_FOLD, {"fold": fold}, first) for fold in request.folds]
    return [*folds, JobSpec("evaluate", "ensemble + test Dice", NNUNET_EVALUATE, stage=first + 1)]


def classify(
    inputs: list[str],
    backbone: str,
    first: int = 0,
    job_params: dict[str, Any] | None = None,
    seg_run: int | None = None,
) -> list[JobSpec]:
    """The segmentation channel's job where an input needs it, then one classifier job per input, named by
    its backbone. `seg_run` None: the run's own folds (a pipeline)."""
    specs = []
    if IMAGE_SEG in inputs:
        own = seg_run is None
        name = "nnU-Net fracture maps" + ("" if own else f" (r{seg_run})")
        specs.append(JobSpec("channel", name, CLASSIFY_CHANNEL, {} if own else {"seg_run": seg_run}, first))
    stage = first + len(specs)
    for mode in inputs:
        params = {**(job_params or {}), "input": mode}
        specs.append(JobSpec("classifier", f"{BACKBONE_NAMES[backbone]} {mode}", CLASSIFY_TRAIN, params, stage))
    return specs


def pipeline(request: PipelineRequest) -> list[JobSpec]:
    specs = [*ingest(), *preprocess(first=INGEST_STAGES)]
    specs += train(request, first=next_stage(specs))
    if request.classifier_epochs:
        # The classifier's own settings travel with its jobs: the run's `epochs` are nnU-Net's.
        classifier = ClassifyRequest(
            dataset_id=request.dataset_id,
            epochs=request.classifier_epochs,
            seed=request.seed,
            backbone=request.backbone,
            weights=request.weights,
        )
        # Out-of-fold maps need every fold.
        inputs = [IMAGE_SEG] if covers_every_fold(request.folds) else [IMAGE]
        specs += classify(inputs, request.backbone, first=next_stage(specs), job_params=classifier.job_params())
    return specs


def export(request: ExportRequest) -> list[JobSpec]:
    with_classifier = f" and r{request.classifier_run}'s classifier" if request.classifier_run else ""
    return [JobSpec("export", f"export r{request.seg_run}'s folds{with_classifier}", PREDICT_EXPORT)]


def import_bundle(request: ImportRequest) -> list[JobSpec]:
    name = f"import {Path(request.bundle).name} as dataset {request.dataset_id}"
    return [JobSpec("import", name, PREDICT_IMPORT)]


def evaluate(request: EvaluateRequest) -> list[JobSpec]:
    name = f"r{request.seg_run} and r{request.classifier_run} on {Path(request.cohort.source).name}"
    return [JobSpec("evaluate", name, EVALUATE_COHORT)]


def rank(count: int) -> list[JobSpec]:
    return [JobSpec("rank", f"rank {count} picture(s)", PREDICT_RANK)]


def predict(what: str) -> list[JobSpec]:
    """`what`: the inputs as the job's name says them ("3 file(s)", "a study at URL")."""
    return [JobSpec("predict", f"predict {what}", CLASSIFY_PREDICT)]


def sweep(request: SweepRequest) -> list[JobSpec]:
    """The segmentation channel where the space offers image+seg, the trials side by side (each asks the
    study for its settings when it starts), then the end: the best trial scored on the test split."""
    specs = []
    if IMAGE_SEG in (choices(request.space, "input") or []):
        name = f"nnU-Net fracture maps (r{request.seg_run})"
        specs.append(JobSpec("channel", name, CLASSIFY_CHANNEL, {"seg_run": request.seg_run}))
    stage = len(specs)
    specs += [JobSpec("trial", f"trial {n}", SWEEP_TRIAL, {"trial": n}, stage) for n in range(1, request.trials + 1)]
    return [*specs, JobSpec("sweep-end", "best trial on the test split", SWEEP_FINISH, stage=stage + 1)]


def superres(request: SuperResRequest) -> list[JobSpec]:
    """One network per scale, side by side."""
    return [
        JobSpec("superres", f"super-resolution x{scale}", SUPERRES_TRAIN, {"scale": scale}) for scale in request.scales
    ]
