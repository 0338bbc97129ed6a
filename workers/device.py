"""Where a gpu-queue job computes: the worker's GPU, or the CPU of a CPU-backed gpu-queue worker."""

from __future__ import annotations

import os
from collections.abc import Mapping

from shared.settings import get_settings


def device(environ: Mapping[str, str] = os.environ) -> str:
    """cuda where the worker of `environ` is pinned to a GPU, cpu otherwise (NNUNET_DEVICE overrides)."""
    chosen = get_settings().nnunet_device
    if chosen:
        return chosen
    return "cuda" if environ.get("CUDA_VISIBLE_DEVICES", "").strip() else "cpu"
