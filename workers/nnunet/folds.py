"""Train one nnU-Net fold with `nnUNetv2_train` in a child process, resuming where it can.

- a fold whose checkpoint_final.pth exists is not trained again (only validated, if that is missing);
- a fold with a checkpoint_latest.pth continues from it (`--c`);
- each epoch's log lines become progress: epoch / total, losses, pseudo Dice, epoch time.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.contract import Experiment, TrainRequest
from shared.defaults import JOBS_TRAINER
from shared.settings import Settings
from workers.child import ToolRun
from workers.device import device
from workers.nnunet.commands import environment, run_tool, tool
from workers.nnunet.epoch_lines import EPOCH_LINES_VARIABLE, epoch_figures

# nnU-Net's print_to_log_file lines: "2026-11-27 05:40:00.123456: Epoch 3"
LOG_VALUE = re.compile(
    r"^(?:\d{4}-\d\d-\d\d [\d:.]+: )?(?P<key>Epoch time|Epoch|train_loss|val_loss|Pseudo dice)"
    r"[: ]\s*(?P<value>.+?)\s*s?$"
)


def _literal_list(text: str) -> list[float]:
    """Pseudo Dice as nnU-Net prints it, one per label: "[np.float32(0.61), np.float32(nan)]" or "[0.61]" (nan
    where a label had neither a prediction nor a reference in the epoch's validation batches)."""
    inner = re.sub(r"np\.float\d+\(([^)]*)\)", r"\1", text).strip().removeprefix("[").removesuffix("]")
    return [float(value) for value in inner.split(",") if value.strip()]


@dataclass
class EpochProgress:
    """Reads nnU-Net's log line by line; `completed` counts finished epochs."""

    total: int | None
    epoch: int = -1
    completed: int = 0
    values: dict[str, Any] = field(default_factory=dict)

    def feed(self, line: str) -> bool:
        """True when the line ends an epoch."""
        match = LOG_VALUE.match(line.strip())
        if not match:
            return False
        key, value = match["key"], match["value"]
        if key == "Epoch":
            self.epoch = int(value)
            self.values = {"epoch": self.epoch}
        elif key == "Epoch time":
            self.values["epoch_time_s"] = float(value)
            self.completed = self.epoch + 1
            return True
        elif key == "Pseudo dice":
            self.values["pseudo_dice"] = _literal_list(value)
        else:
            self.values[key] = float(value)
        return False

    def message(self) -> str:
        parts = [f"epoch {self.completed}/{self.total or '?'}"]
        for key in ("train_loss", "val_loss"):
            if key in self.values:
                parts.append(f"{key} {self.values[key]:.4f}")
        known = [value for value in self.values.get("pseudo_dice", []) if not math.isnan(value)]
        if known:
            parts.append(f"pseudo Dice {sum(known) / len(known):.3f}")
        if "epoch_time_s" in self.values:
            parts.append(f"{self.values['epoch_time_s']:.1f} s/epoch")
        return ", ".join(parts)


@dataclass(frozen=True)
class FoldRequest:
    experiment: Experiment
    fold: int
    epochs: int | None = None  # through the project's trainer
    iterations: int | None = None
    val_iterations: int | None = None
    save_every: int | None = None
    pretrained: str | None = None  # a checkpoint the fold starts from (not one it resumes from)

    @classmethod
    def of(cls, request: TrainRequest, fold: int) -> FoldRequest:
        """One fold of a training run."""
        return cls(
            request.experiment, fold, request.epochs, request.iterations, request.val_iterations, request.save_every,
            request.pretrained,
        )  # fmt: skip

    def command(self, executable: str, device: str, resume: list[str]) -> list[str]:
        """`executable` (nnUNetv2_train) for this fold; `resume` is [], ["--c"] or ["--val"]."""
        experiment = self.experiment
        return [
            executable,
            str(experiment.dataset_id),
            experiment.configuration,
            str(self.fold),
            "-tr",
            experiment.trainer,
            "-p",
            experiment.plans,
            "-device",
            device,
            "--npz",
            *resume,
            # A fresh start only: nnU-Net refuses pretrained weights beside --c, and a resumed fold has its own.
            *(["-pretrained_weights", self.pretrained] if self.pretrained and not resume else []),
        ]

    def trainer_environment(self) -> dict[str, str]:
        if self.experiment.trainer != JOBS_TRAINER:
            return {}
        values = {
            "NNUNET_JOBS_EPOCHS": self.epochs,
            "NNUNET_JOBS_ITERATIONS": self.iterations,
            "NNUNET_JOBS_VAL_ITERATIONS": self.val_iterations,
            "NNUNET_JOBS_SAVE_EVERY": self.save_every,
        }
        return {key: str(value) for key, value in values.items() if value is not None}


def predict_command(
    experiment: Experiment, inputs: Path, outputs: Path, folds: list[int], probabilities: bool = False
) -> list[str]:
    """`nnUNetv2_predict` of `inputs` into `outputs` with the ensemble of `folds` (one process each for
    preprocessing and export on the CPU, where nnU-Net's defaults would crowd the cores)."""
    on_cpu = device() == "cpu"
    return [
        tool("nnUNetv2_predict"),
        *("-i", str(inputs), "-o", str(outputs), "-d", str(experiment.dataset_id)),
        *("-c", experiment.configuration, "-tr", experiment.trainer, "-p", experiment.plans),
        *("-f", *map(str, folds)),
        *("-device", device(), "--disable_progress_bar"),
        *(["--save_probabilities"] if probabilities else []),
        *(["-npp", "1", "-nps", "1"] if on_cpu else []),
    ]


def _train_executable(settings: Settings) -> str:
    """nnUNetv2_train from this environment, or the command NNUNET_TRAIN_COMMAND names."""
    chosen = settings.nnunet_train_command
    return chosen if "/" in chosen else tool(chosen)


def validation_dice(fold_folder: Path) -> float | None:
    summary = fold_folder / "validation" / "summary.json"
    if not summary.exists():
        return None
    return float(json.loads(summary.read_text())["foreground_mean"]["Dice"])


def fold_artifacts(fold_folder: Path, log: Path) -> dict[str, str]:
    names = ("checkpoint_final.pth", "checkpoint_best.pth", "checkpoint_latest.pth", "progress.png")
    found = {name.split(".")[0]: str(fold_folder / name) for name in names if (fold_folder / name).exists()}
    if (fold_folder / "validation" / "summary.json").exists():
        found["validation_summary"] = str(fold_folder / "validation" / "summary.json")
    return {**found, "log": str(log)}


def train_fold(
    settings: Settings,
    request: FoldRequest,
    log: Path,
    on_epoch: Callable[[int, int | None, str, dict[str, Any]], None],
    should_stop: Callable[[], bool],
    on_figures: Callable[[int, int, dict[str, float]], None] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """`on_figures(step, time in ms, values)`: each epoch's figures, printed by the project's trainer when
    asked (workers/nnunet/epoch_lines.py)."""
    experiment = request.experiment
    experiment.preprocessed(settings.layout)  # a clear error before nnU-Net's own
    folder = experiment.fold_folder(settings.layout, request.fold)
    done = (folder / "checkpoint_final.pth").exists()
    resumed = not done and (folder / "checkpoint_latest.pth").exists()
    if done and validation_dice(folder) is not None:
        mode = "already trained"
    else:
        resume = ["--val"] if done else (["--c"] if resumed else [])
        command = request.command(_train_executable(settings), device(), resume)
        mode = "validated only" if done else ("resumed" if resumed else "trained")
        progress = EpochProgress(request.epochs if experiment.trainer == JOBS_TRAINER else None)

        def on_line(line: str) -> None:
            if on_figures is not None and (figures := epoch_figures(line)) is not None:
                on_figures(*figures)
            elif progress.feed(line):
                on_epoch(progress.completed, progress.total, progress.message(), dict(progress.values))

        lines = {EPOCH_LINES_VARIABLE: "1"} if on_figures is not None else {}
        env = environment(settings, {**request.trainer_environment(), **lines})
        run_tool(f"nnUNetv2_train (fold {request.fold})", command, env, ToolRun(log, on_line, should_stop))
    metrics = {"validation_dice": validation_dice(folder), "mode": mode, "fold": request.fold}
    return metrics, fold_artifacts(folder, log)
