"""Augmentation on the device, a whole batch at a time: the set never leaves the GPU as uint8.

Flips, small rotations, and brightness and contrast on the radiograph channel (a probability map keeps
its values). `strength` scales the rotation, brightness and contrast (1: the defaults below; 0: none of it,
flips included). Input (B, C, H, W) uint8; output normalised float32.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MAX_ROTATION_DEG = 10.0
BRIGHTNESS = 0.1
CONTRAST = 0.1
MEAN, STD = 0.5, 0.25


def normalise(batch: torch.Tensor) -> torch.Tensor:
    return (batch.float() / 255.0 - MEAN) / STD


def augment(batch: torch.Tensor, generator: torch.Generator | None = None, strength: float = 1.0) -> torch.Tensor:
    if strength <= 0:
        return normalise(batch)
    size, device = batch.shape[0], batch.device

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.empty(size, device=device).uniform_(low, high, generator=generator)

    x = batch.float() / 255.0
    flip_h, flip_v = uniform(0, 1) < 0.5, uniform(0, 1) < 0.5
    x = torch.where(flip_h[:, None, None, None], x.flip(-1), x)
    x = torch.where(flip_v[:, None, None, None], x.flip(-2), x)
    angle = uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG) * (strength * math.pi / 180)
    cos, sin, zero = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    picture = x[:, :1]
    mean = picture.mean(dim=(2, 3), keepdim=True)
    contrast = uniform(1 - CONTRAST * strength, 1 + CONTRAST * strength)[:, None, None, None]
    brightness = uniform(-BRIGHTNESS * strength, BRIGHTNESS * strength)[:, None, None, None]
    picture = ((picture - mean) * contrast + mean + brightness).clamp(0, 1)
    x = torch.cat([picture, x[:, 1:]], dim=1)
    return (x - MEAN) / STD
