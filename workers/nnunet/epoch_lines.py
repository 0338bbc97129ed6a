"""A logger for nnU-Net's own `MetaLogger`, which fans each epoch's values out to its loggers.

The project's trainer (nnUNetTrainerJobs) appends it when the fold task asks for it (FRACATLAS_EPOCH_LINES):
the values of one epoch are collected and, when the epoch ends, printed as one line on nnU-Net's output,
which the fold task reads anyway (for its progress). The fold task puts the line's figures in its job's
outbox under nnU-Net's epoch number as the step. nnU-Net's process itself never talks to MLflow: five folds
starting at once would otherwise each import MLflow's client and look up the job's run, on cores that
are busy starting the folds (docs/tracking.md, "Lag"). A resumed fold does not log again the epochs its
run already holds (the outbox skips them).
"""

from __future__ import annotations

import json
import numbers
import os
import time
from typing import Any

EPOCH_LINES_VARIABLE = "FRACATLAS_EPOCH_LINES"
LINE_PREFIX = "fracatlas-epoch "

# nnU-Net's keys -> the names shown in MLflow
NAMES = {
    "train_losses": "train_loss",
    "val_losses": "val_loss",
    "mean_fg_dice": "pseudo_dice",
    "ema_fg_dice": "pseudo_dice_ema",
    "lrs": "learning_rate",
}


class EpochLines:
    """The interface of nnU-Net's loggers: update_config, log, log_summary."""

    def __init__(self) -> None:
        self._epoch: dict[str, float] = {}
        self._started: float | None = None

    @classmethod
    def from_environment(cls) -> EpochLines | None:
        return cls() if os.environ.get(EPOCH_LINES_VARIABLE) == "1" else None

    def update_config(self, config: dict[str, Any]) -> None:
        """nnU-Net's configuration is in the job's parameters already."""

    def log(self, key: str, value: Any, step: int) -> None:
        if key == "epoch_start_timestamps":
            self._started = float(value)
        elif key == "epoch_end_timestamps":
            if self._started is not None:
                self._epoch["epoch_time_s"] = float(value) - self._started
            self._flush(step)
        elif key in NAMES and isinstance(value, numbers.Real):  # nnU-Net's losses are numpy floats
            self._epoch[NAMES[key]] = float(value)
        # MetaLogger passes a list value (Dice per class) one class at a time as "<key>/class_<i>".
        elif key.startswith("dice_per_class_or_region/"):
            self._epoch["dice_" + key.rsplit("/", 1)[1]] = float(value)

    def log_summary(self, key: str, value: Any) -> None:
        """nnU-Net's summaries (the final validation Dice) reach the job's run from the fold task."""

    def _flush(self, step: int) -> None:
        if self._epoch:
            line = {"step": step, "at": int(time.time() * 1000), "values": self._epoch}
            print(LINE_PREFIX + json.dumps(line), flush=True)
        self._epoch = {}


def epoch_figures(line: str) -> tuple[int, int, dict[str, float]] | None:
    """(step, time in ms, values) of an epoch line; None for any other line of nnU-Net's output."""
    if not line.startswith(LINE_PREFIX):
        return None
    try:
        parsed = json.loads(line[len(LINE_PREFIX) :])
        return int(parsed["step"]), int(parsed["at"]), {key: float(v) for key, v in parsed["values"].items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
