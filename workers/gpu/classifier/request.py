"""What one classifier job is asked to do, as the dispatcher records it (no torch here: the dispatcher
imports this module)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

IMAGE, IMAGE_SEG = "image", "image+seg"


@dataclass(frozen=True)
class ClassifyRequest:
    dataset_id: int = 921
    input: str = IMAGE
    seg_run: int | None = None
    weights: str = "none"
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 1e-3
    patience: int = 10
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0

    @classmethod
    def from_params(cls, run_params: dict[str, Any], job_params: dict[str, Any]) -> ClassifyRequest:
        """The job's own parameters win: a pipeline run's `epochs` are nnU-Net's, its classifier jobs carry
        their own. `seg_run` None means the job's own run (a pipeline trains the folds it uses)."""
        merged = {**run_params, **job_params}
        return cls(**{name: merged[name] for name in cls.__dataclass_fields__ if merged.get(name) is not None})
