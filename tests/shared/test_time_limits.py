"""Per-task time limits: generous for training, tight for small CPU jobs, overridden by JOB_TIME_LIMITS."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.settings import Settings
from shared.tasknames import INGEST_CONVERT, NNUNET_TRAIN_FOLD, QUEUE_OF
from shared.time_limits import SOFT_LIMIT_S, time_limit


def test_every_task_has_a_limit_and_folds_get_days_where_a_chunk_gets_minutes() -> None:
    assert set(SOFT_LIMIT_S) == set(QUEUE_OF)
    settings = Settings()
    assert time_limit(settings, NNUNET_TRAIN_FOLD).soft_s >= 7 * 24 * 3600
    convert = time_limit(settings, INGEST_CONVERT)
    assert convert.soft_s <= 3600 and convert.hard_s == convert.soft_s + settings.hard_limit_grace_seconds


def test_job_time_limits_overrides_one_task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_TIME_LIMITS", '{"ingest.convert": 45}')
    monkeypatch.setenv("HARD_LIMIT_GRACE_SECONDS", "5")
    settings = Settings()
    assert (time_limit(settings, INGEST_CONVERT).soft_s, time_limit(settings, INGEST_CONVERT).hard_s) == (45, 50)
    assert time_limit(settings, NNUNET_TRAIN_FOLD).soft_s == SOFT_LIMIT_S[NNUNET_TRAIN_FOLD]


@pytest.mark.parametrize("value", ['{"ingest.convrt": 45}', '{"ingest.convert": 0}'])
def test_a_bad_job_time_limits_names_the_task(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("JOB_TIME_LIMITS", value)
    with pytest.raises(ValidationError, match="JOB_TIME_LIMITS"):
        Settings()
