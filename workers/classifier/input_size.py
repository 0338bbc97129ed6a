"""The cache's letterboxed squares at the classifier's input size, on the training device.

The cache is written once at the ingest's working size (512 by default); the classifier reads it at its own
`--input-size` (384 by default; never above the cache's size: enlarging adds no detail). Shrinking is an
antialiased bilinear resize, done in slices so that the float copy stays small.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SLICE = 256  # images resized at once


def input_size(requested: int, working_size: int) -> int:
    return min(requested, working_size)


def resized(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, H) uint8 -> (N, C, size, size) uint8, where size <= H."""
    if images.shape[-1] == size:
        return images
    out = torch.empty((*images.shape[:2], size, size), dtype=torch.uint8, device=images.device)
    for start in range(0, len(images), SLICE):
        part = images[start : start + SLICE].float()
        small = F.interpolate(part, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start : start + SLICE] = small.round_().clamp_(0, 255).to(torch.uint8)
    return out
