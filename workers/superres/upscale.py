"""`dispatch ingest --upscale`: how a picture smaller than the working size is enlarged.

bicubic is geometry.resized's rule. sr runs a super-resolution network (docs/superres.md) on the picture at
its own resolution: the network of the smallest scale that reaches the working size, else the largest; then
geometry.resized brings the result to the exact working shape (a network's output is usually a little
larger, and is shrunk). Masks are never upscaled images: the ingest rasterises the polygons at the output
size whatever the method.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from workers.imaging.geometry import resized

BICUBIC = "bicubic"


@cache
def _network(path: str) -> tuple[Any, str]:
    import torch

    from workers.superres.network import load_model

    torch.set_num_threads(1)  # a cpu worker runs one pool process per core
    model, about = load_model(Path(path))
    return model, about.get("run", "")


class Upscaler:
    """Enlarge with bicubic, or with the networks of `models` (scale -> weights file), saying which."""

    def __init__(self, models: dict[int, str]) -> None:
        self.models = dict(sorted(models.items()))

    def __call__(self, upright: Image.Image, target: tuple[int, int]) -> tuple[np.ndarray, str]:
        if not self.models:
            return np.asarray(resized(upright, target)), BICUBIC
        from workers.superres.network import upscale

        ratio = max(target[0] / upright.width, target[1] / upright.height)
        scale = next((scale for scale in self.models if scale >= ratio), max(self.models))
        model, run = _network(self.models[scale])
        enlarged = Image.fromarray(upscale(model, np.asarray(upright)))
        return np.asarray(resized(enlarged, target)), f"sr x{scale} ({run})"
