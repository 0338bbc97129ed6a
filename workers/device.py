"""Where a gpu-queue job computes: the worker's GPU, or the CPU of a CPU-backed gpu-queue worker."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from shared.settings import get_settings

if TYPE_CHECKING:
    import torch


def device(environ: Mapping[str, str] = os.environ) -> str:
    """cuda where the worker of `environ` is pinned to a GPU, cpu otherwise (NNUNET_DEVICE overrides)."""
    chosen = get_settings().nnunet_device
    if chosen:
        return chosen
    return "cuda" if environ.get("CUDA_VISIBLE_DEVICES", "").strip() else "cpu"


def torch_device() -> torch.device:
    """The same device for the project's own torch trainings (the classifier, the super-resolution networks)."""
    import torch  # here, not above: nnU-Net's fold task asks device() and never loads torch itself

    return torch.device(device())
