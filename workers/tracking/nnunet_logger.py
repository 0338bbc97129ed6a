"""An MLflow logger for nnU-Net's own `MetaLogger`, which fans each epoch's values out to its loggers.

The project's trainer (nnUNetTrainerJobs) appends it when the fold task names its job
(FRACATLAS_TRACKING_JOB): the values of one epoch are collected and put in the job's outbox as one entry
when the epoch ends, under nnU-Net's epoch number as the step. The outbox sends them in the background,
and a resumed fold does not log again the epochs its run already holds.
"""

from __future__ import annotations

import numbers
import os
import time
from typing import Any

JOB_VARIABLE = "FRACATLAS_TRACKING_JOB"
RUN_VARIABLE = "FRACATLAS_TRACKING_RUN"

# nnU-Net's keys -> the names shown in MLflow
NAMES = {
    "train_losses": "train_loss",
    "val_losses": "val_loss",
    "mean_fg_dice": "pseudo_dice",
    "ema_fg_dice": "pseudo_dice_ema",
    "lrs": "learning_rate",
}


class MlflowLogger:
    """The interface of nnU-Net's loggers: update_config, log, log_summary."""

    def __init__(self, job_id: int, run_id: int) -> None:
        from workers.tracking.outbox import Outbox

        self.job_id, self.run_id = job_id, run_id
        self.outbox = Outbox(f"j{job_id}-nnunet")
        self._epoch: dict[str, float] = {}
        self._started: float | None = None

    @classmethod
    def from_environment(cls) -> MlflowLogger | None:
        job, run = os.environ.get(JOB_VARIABLE), os.environ.get(RUN_VARIABLE)
        return cls(int(job), int(run)) if job and run else None

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
        now = int(time.time() * 1000)
        values = [[key, value, now, step] for key, value in self._epoch.items()]
        self._epoch = {}
        if values:
            self.outbox.put({"kind": "metrics", "job": self.job_id, "run": self.run_id, "values": values})

    def close(self) -> None:
        self.outbox.close()
