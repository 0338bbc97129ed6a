"""The held-out pictures upscaled three ways (bicubic, Lanczos, the network) and scored against the truth,
and a picture of sample crops: input, bicubic, network, truth side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from workers.bootstrap import mean_interval
from workers.superres.network import SuperResolution, upscale
from workers.superres.pairs import Pair
from workers.superres.quality import scores

CLASSICAL = {"bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}
SAMPLE_CROP = 96  # truth pixels per side of each sample crop
SAMPLES = 3


def classical_upscale(small: np.ndarray, scale: int, method: str) -> np.ndarray:
    rows, columns = small.shape
    return np.asarray(Image.fromarray(small).resize((columns * scale, rows * scale), CLASSICAL[method]))


def evaluate(model: SuperResolution, held_out: list[Pair], device: torch.device) -> dict[str, Any]:
    """Per method, the mean PSNR and SSIM over the held-out pictures; for the network, its gain over bicubic
    with a 95% bootstrap interval over the pictures."""
    scale = model.shape.scale
    per_method: dict[str, list[dict[str, float]]] = {"bicubic": [], "lanczos": [], "network": []}
    for pair in held_out:
        for method in CLASSICAL:
            per_method[method].append(scores(pair.truth, classical_upscale(pair.small, scale, method), scale))
        per_method["network"].append(scores(pair.truth, upscale(model, pair.small, device), scale))
    figures: dict[str, Any] = {"held_out_pictures": len(held_out)}
    for method, rows in per_method.items():
        for key in ("psnr", "ssim"):
            figures[f"{method}_{key}"] = float(np.mean([row[key] for row in rows]))
    for key in ("psnr", "ssim"):
        gains = [net[key] - bic[key] for net, bic in zip(per_method["network"], per_method["bicubic"], strict=True)]
        figures[f"{key}_gain_over_bicubic"] = float(np.mean(gains))
        figures[f"{key}_gain_over_bicubic_ci"] = mean_interval(gains)
    return figures


def _most_detailed(truth: np.ndarray, side: int, scale: int) -> tuple[int, int]:
    """The top-left corner (on the input's grid) of the side x side window with the most contrast: a bone's
    edge rather than the background."""
    stride = max(scale, side // 2 // scale * scale)
    corners = [
        (top, left)
        for top in range(0, truth.shape[0] - side + 1, stride)
        for left in range(0, truth.shape[1] - side + 1, stride)
    ]
    return max(corners, key=lambda corner: truth[corner[0] : corner[0] + side, corner[1] : corner[1] + side].std())


def sample_crops(model: SuperResolution, held_out: list[Pair], device: torch.device, path: Path) -> Path:
    """Rows of (input enlarged without interpolation, bicubic, network, truth) from the first held-out
    pictures, each where it has the most contrast."""
    scale = model.shape.scale
    rows = []
    for pair in held_out[:SAMPLES]:
        side = min(SAMPLE_CROP, *pair.truth.shape) // scale * scale
        top, left = _most_detailed(pair.truth, side, scale)
        small = pair.small[top // scale : (top + side) // scale, left // scale : (left + side) // scale]
        panels = [
            np.kron(small, np.ones((scale, scale), np.uint8)),
            classical_upscale(small, scale, "bicubic"),
            upscale(model, small, device),
            pair.truth[top : top + side, left : left + side],
        ]
        rows.append(np.concatenate([np.pad(panel, 2, constant_values=255) for panel in panels], axis=1))
    grid = np.concatenate(rows, axis=0)
    image = Image.fromarray(np.pad(grid, ((14, 0), (0, 0)), constant_values=255)).convert("RGB")
    draw = ImageDraw.Draw(image)
    width = grid.shape[1] // 4
    for column, label in enumerate(("input", "bicubic", f"network x{scale}", "truth")):
        draw.text((column * width + 4, 1), label, fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
