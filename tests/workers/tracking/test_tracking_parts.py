"""The parts of the MLflow tracking that need no server: what counts as a figure, which test cases are
pictured, the timeline picture, and how nnU-Net's epoch values become one entry per epoch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workers.nnunet.epoch_lines import EpochLines, epoch_figures
from workers.nnunet.overlays import chosen_cases
from workers.tracking.job import numeric
from workers.tracking.timeline import DPI, MARGIN_INCHES, ROW_INCHES, timeline_png, timeline_rows


def test_figures_are_the_numbers_of_a_metrics_dict() -> None:
    metrics = {
        "cv_dice_mean": 0.8,
        "folds": {"0": 0.7, "1": None},
        "classifier image+seg": {"test": {"roc_auc": 0.9, "confusion": {"tp": 3}}},
        "mode": "trained",
        "reused": True,
        "history": [{"epoch": 1}],
        "request": {"epochs": 30},
    }
    assert numeric(metrics) == {
        "cv_dice_mean": 0.8,
        "folds/0": 0.7,
        "classifier_image_seg/test/roc_auc": 0.9,
        "classifier_image_seg/test/confusion/tp": 3.0,
    }


def test_the_best_median_and_worst_case_are_pictured_once_each() -> None:
    chosen = chosen_cases({"a": 0.9, "b": 0.1, "c": 0.5, "d": None})
    assert [(label, case) for label, case, _ in chosen] == [("best", "a"), ("median", "c"), ("worst", "b")]
    assert [label for label, _, _ in chosen_cases({"only": 0.4})] == ["best"]
    assert chosen_cases({"none": None}) == []


def test_the_timeline_has_a_row_per_worker(tmp_path: Path) -> None:
    def job(name: str, worker: str, start: str, end: str, state: str = "succeeded", attempt: int = 1) -> dict:
        return {"name": name, "worker": worker, "started_at": f"2026-11-28T10:00:{start}+00:00",
                "finished_at": f"2026-11-28T10:00:{end}+00:00", "heartbeat_at": None, "state": state,
                "attempt": attempt}  # fmt: skip

    run = {
        "id": 7,
        "kind": "train",
        "state": "succeeded",
        "jobs": [
            job("fold 0", "gpu0@a", "00", "30"),
            {
                **job("fold 1", "gpu1@a", "12", "29", attempt=2),
                "earlier_attempts": [
                    {
                        "attempt": 1,
                        "worker": "gpu-slurm2@b",
                        "started_at": "2026-11-28T10:00:01+00:00",
                        "ended_at": "2026-11-28T10:00:11+00:00",
                        "end": "handed back",
                    }
                ],
            },  # fmt: skip
            job("evaluate", "gpu0@a", "31", "40"),
            {**job("fold 2", "gpu1@a", "00", "00", "cancelled"), "started_at": None},
        ],
    }
    rows = timeline_rows(run)
    assert list(rows) == ["gpu-slurm2@b", "gpu0@a", "gpu1@a"], "a row per worker that ran a job or an attempt"
    assert [(bar.label, bar.began, bar.length) for bar in rows["gpu0@a"]] == [("fold 0", 0, 30), ("evaluate", 31, 9)]
    assert [(bar.label, bar.began, bar.state) for bar in rows["gpu1@a"]] == [("fold 1 (attempt 2)", 12, "succeeded")]
    handed = [(bar.label, bar.began, bar.length, bar.state) for bar in rows["gpu-slurm2@b"]]
    assert handed == [("fold 1 (attempt 1: handed back)", 1, 10, "handed back")]
    picture = timeline_png(run, tmp_path / "timeline.png")
    with Image.open(picture) as image:
        assert image.format == "PNG" and image.size == (9 * DPI, round((ROW_INCHES * 3 + MARGIN_INCHES) * DPI))


def test_an_epoch_of_nnunet_values_becomes_one_line_the_fold_task_reads(capsys: pytest.CaptureFixture[str]) -> None:
    logger = EpochLines()
    for key, value in (
        ("epoch_start_timestamps", 100.0),
        ("lrs", 0.01),
        ("train_losses", np.float32(-0.25)),
        ("mean_fg_dice", 0.5),
        ("ema_fg_dice", 0.45),
        ("dice_per_class_or_region/class_1", 0.5),
        ("val_losses", -0.1),
        ("epoch_end_timestamps", 112.5),
    ):
        logger.log(key, value, step=4)
    (line,) = capsys.readouterr().out.splitlines()
    step, at, values = epoch_figures(line)
    assert step == 4 and at > 0
    assert values == {
        "learning_rate": 0.01,
        "train_loss": -0.25,
        "pseudo_dice": 0.5,
        "pseudo_dice_ema": 0.45,
        "dice_class_1": 0.5,
        "val_loss": -0.1,
        "epoch_time_s": 12.5,
    }
    assert epoch_figures("Epoch 4") is None and epoch_figures("fracatlas-epoch {broken") is None
