"""How long each kind of job may run before it fails: generous for training, tight for small CPU jobs.

JOB_TIME_LIMITS (JSON, task name -> seconds) overrides any of these; see docs/reliability.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings import Settings
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
    REAP,
    SUPERRES_TRAIN,
    SWEEP_FINISH,
    SWEEP_TRIAL,
)

HOUR = 3600.0
DAY = 24 * HOUR

SOFT_LIMIT_S = {
    INGEST_PLAN: 0.5 * HOUR,  # reads the COCO file and lists the release
    INGEST_CONVERT: 0.25 * HOUR,  # one chunk of INGEST_CHUNK_SIZE pictures: seconds when healthy
    INGEST_ASSEMBLE: 1 * HOUR,
    NNUNET_PREPROCESS: 12 * HOUR,
    NNUNET_TRAIN_FOLD: 7 * DAY,  # 1000 epochs of a large plan on a slow GPU
    NNUNET_EVALUATE: 1 * DAY,
    CLASSIFY_CHANNEL: 1 * DAY,
    CLASSIFY_TRAIN: 3 * DAY,
    CLASSIFY_PREDICT: 6 * HOUR,
    PREDICT_EXPORT: 1 * HOUR,  # zipping five folds and a classifier
    PREDICT_IMPORT: 1 * HOUR,  # checking and unpacking them
    PREDICT_RANK: 1 * DAY,  # each fold alone over thousands of unlabelled pictures
    EVALUATE_COHORT: 1 * DAY,  # a cohort of thousands through the ensemble and 2000 bootstrap draws per figure
    SWEEP_TRIAL: 3 * DAY,  # one classifier training, as CLASSIFY_TRAIN
    SWEEP_FINISH: 6 * HOUR,
    SUPERRES_TRAIN: 3 * DAY,  # one scale's network, as CLASSIFY_TRAIN
    REAP: 5 * 60.0,
}


@dataclass(frozen=True)
class TimeLimit:
    soft_s: float  # the job is told (SoftTimeLimitExceeded) and fails, naming the limit
    hard_s: float  # the worker's pool process is killed; the job fails from the worker's main process


def time_limit(settings: Settings, task_name: str) -> TimeLimit:
    soft = float(settings.job_time_limits.get(task_name, SOFT_LIMIT_S[task_name]))
    return TimeLimit(soft, soft + settings.hard_limit_grace_seconds)


def describe(task_name: str, seconds: float) -> str:
    return f"{seconds:g} s ({task_name}; JOB_TIME_LIMITS sets it)"
