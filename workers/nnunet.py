"""What every nnU-Net step shares: where a dataset's folders are, the environment of its commands, and how
one runs (a child process whose failure becomes a user-facing error).

nnU-Net runs as its own command-line tools in child processes; this module never imports nnunetv2.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.settings import Settings
from workers.child import ChildFailed, run_child
from workers.errors import InputError, ToolFailed

TRAINERS_DIR = Path(__file__).resolve().parent / "gpu" / "nnunet_trainers"
JOBS_TRAINER = "nnUNetTrainerJobs"
FOLDS = 5  # nnU-Net's cross-validation folds
ERROR_LINE = re.compile(r"^\w*(Error|Exception|error):")


def tool(name: str) -> str:
    """An nnU-Net console script from this environment (nnUNetv2_train, ...)."""
    return str(Path(sys.executable).parent / name)


def dataset_folder(root: Path, dataset_id: int) -> Path:
    found = sorted(root.glob(f"Dataset{dataset_id:03d}_*")) if root.is_dir() else []
    if not found:
        raise InputError(f"no Dataset{dataset_id:03d}_* under {root}")
    return found[0]


@dataclass(frozen=True)
class Experiment:
    """One nnU-Net training setup: dataset, configuration, trainer and plans."""

    dataset_id: int
    configuration: str = "2d"
    trainer: str = "nnUNetTrainer"
    plans: str = "nnUNetPlans"

    def raw(self, settings: Settings) -> Path:
        try:
            return dataset_folder(settings.nnunet_raw, self.dataset_id)
        except InputError:
            raise InputError(
                f"dataset {self.dataset_id} is not in {settings.nnunet_raw}; run `dispatch ingest` first"
            ) from None

    def preprocessed(self, settings: Settings) -> Path:
        try:
            folder = dataset_folder(settings.nnunet_preprocessed, self.dataset_id)
        except InputError:
            folder = None
        if folder is None or not (folder / f"{self.plans}.json").exists():
            raise InputError(
                f"dataset {self.dataset_id} has no {self.plans}.json in {settings.nnunet_preprocessed}; "
                f"run `dispatch preprocess --dataset-id {self.dataset_id}` first"
            )
        return folder

    def results(self, settings: Settings) -> Path:
        name = self.preprocessed(settings).name
        return settings.nnunet_results / name / f"{self.trainer}__{self.plans}__{self.configuration}"

    def fold_folder(self, settings: Settings, fold: int | str) -> Path:
        return self.results(settings) / f"fold_{fold}"


def experiment_of(params: dict[str, Any]) -> Experiment:
    """The experiment named by a run's parameters."""
    return Experiment(
        dataset_id=int(params.get("dataset_id", 921)),
        configuration=params.get("configuration", "2d"),
        trainer=params.get("trainer", "nnUNetTrainer"),
        plans=params.get("plans", "nnUNetPlans"),
    )


def environment(settings: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The worker's environment with nnU-Net's folders and the project's trainers."""
    env = {**os.environ, **settings.nnunet_environ(), "nnUNet_extTrainer": str(TRAINERS_DIR)}
    env.setdefault("PYTHONUNBUFFERED", "1")
    return {**env, **(extra or {})}


def device(environ: Mapping[str, str] = os.environ) -> str:
    """cuda where the worker of `environ` is pinned to a GPU, cpu otherwise (a CPU-backed gpu-queue worker)."""
    from shared.settings import get_settings

    chosen = get_settings().nnunet_device
    if chosen:
        return chosen
    return "cuda" if environ.get("CUDA_VISIBLE_DEVICES", "").strip() else "cpu"


def run_tool(
    step: str,
    command: list[str],
    env: dict[str, str],
    log: Path,
    on_line: Callable[[str], None],
    should_stop: Callable[[], bool],
) -> None:
    """Run one nnU-Net command as a child process; its failure becomes a user-facing ToolFailed that quotes
    its last error line and says where its log is."""
    try:
        run_child(command, env, log, on_line, should_stop)
    except ChildFailed as error:
        errors = [line for line in error.tail if ERROR_LINE.match(line.strip())]
        reason = errors[-1].strip() if errors else (error.tail[-1].strip() if error.tail else "no output")
        raise ToolFailed(f"{step} exited with {error.code}: {reason}; full log: {log}") from error
