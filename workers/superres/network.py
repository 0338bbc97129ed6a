"""The super-resolution network: EDSR-baseline's body at a small width, ESPCN's sub-pixel upsampling, and a
skip over bicubic upscaling (docs/superres.md argues the choice and its size).

The last convolution starts at zero, so an untrained network returns bicubic exactly: training can only
add what bicubic misses, and a short budget cannot leave the network worse than its baseline by much.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shared.defaults import SUPERRES_SCALES


@dataclass(frozen=True)
class NetworkShape:
    scale: int
    features: int = 32
    blocks: int = 4


class _ResidualBlock(nn.Module):
    """EDSR's block: conv, ReLU, conv, no batch normalisation, the residual scaled down for stability."""

    def __init__(self, features: int, residual_scale: float = 0.1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(features, features, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(features, features, 3, padding=1),
        )
        self.residual_scale = residual_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual_scale * self.body(x)


class SuperResolution(nn.Module):
    """(N, 1, H, W) in [0, 1] -> (N, 1, scale H, scale W)."""

    def __init__(self, shape: NetworkShape) -> None:
        super().__init__()
        if shape.scale not in SUPERRES_SCALES:
            raise ValueError(f"scale {shape.scale}: the network upscales by {' or '.join(map(str, SUPERRES_SCALES))}")
        self.shape = shape
        self.head = nn.Conv2d(1, shape.features, 3, padding=1)
        self.body = nn.Sequential(
            *(_ResidualBlock(shape.features) for _ in range(shape.blocks)),
            nn.Conv2d(shape.features, shape.features, 3, padding=1),
        )
        self.upsample = nn.Sequential(
            nn.Conv2d(shape.features, shape.features * shape.scale**2, 3, padding=1), nn.PixelShuffle(shape.scale)
        )
        self.tail = nn.Conv2d(shape.features, 1, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = F.interpolate(x, scale_factor=self.shape.scale, mode="bicubic", align_corners=False)
        features = self.head(x)
        return base + self.tail(self.upsample(features + self.body(features)))


def parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def save_model(model: SuperResolution, path: Path, about: dict[str, Any]) -> None:
    """The weights with their shape and what trained them: all a loader needs, no pickled classes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    torch.save({"shape": asdict(model.shape), "state": model.state_dict(), "about": about}, temporary)
    temporary.replace(path)


def load_model(path: Path, device: torch.device | str = "cpu") -> tuple[SuperResolution, dict[str, Any]]:
    saved = torch.load(path, map_location=device, weights_only=True)
    model = SuperResolution(NetworkShape(**saved["shape"]))
    model.load_state_dict(saved["state"])
    return model.to(device).eval(), saved["about"]


@torch.no_grad()
def upscale(model: SuperResolution, pixels: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """A (rows, columns) uint8 numpy picture upscaled by the model's scale, as uint8."""
    x = torch.from_numpy(np.array(pixels, dtype=np.float32)).to(device)[None, None] / 255
    y = model(x)[0, 0].clamp(0, 1).mul(255).round().to(torch.uint8)
    return y.cpu().numpy()
