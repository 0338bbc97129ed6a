"""PSNR and SSIM of an upscaled picture against the truth, as the super-resolution literature computes them:
on 8-bit grayscale, with a border of `scale` pixels shaved off (where an upscaler has too little context),
and SSIM with Wang et al.'s 11x11 Gaussian window (sigma 1.5). The test suite checks both against
scikit-image's on the same arrays."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

DATA_RANGE = 255.0
SIGMA = 1.5
TRUNCATE = 3.5  # the window's radius in sigmas: 5 pixels, an 11x11 window
K1, K2 = 0.01, 0.03


def shave(pixels: np.ndarray, border: int) -> np.ndarray:
    return pixels[border:-border, border:-border] if border else pixels


def psnr(truth: np.ndarray, estimate: np.ndarray) -> float:
    error = np.mean((truth.astype(np.float64) - estimate.astype(np.float64)) ** 2)
    return float("inf") if error == 0 else float(10 * np.log10(DATA_RANGE**2 / error))


def ssim(truth: np.ndarray, estimate: np.ndarray) -> float:
    """Mean structural similarity over the picture, less the window's radius at each edge."""
    x, y = truth.astype(np.float64), estimate.astype(np.float64)

    def blur(values: np.ndarray) -> np.ndarray:
        return gaussian_filter(values, SIGMA, truncate=TRUNCATE, mode="reflect")

    mean_x, mean_y = blur(x), blur(y)
    var_x = blur(x * x) - mean_x**2
    var_y = blur(y * y) - mean_y**2
    cov = blur(x * y) - mean_x * mean_y
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    index = ((2 * mean_x * mean_y + c1) * (2 * cov + c2)) / ((mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2))
    radius = int(TRUNCATE * SIGMA + 0.5)
    return float(shave(index, radius).mean())


def scores(truth: np.ndarray, estimate: np.ndarray, scale: int) -> dict[str, float]:
    """PSNR and SSIM of `estimate` against `truth` (same shape, uint8), `scale` border pixels shaved."""
    truth, estimate = shave(truth, scale), shave(estimate, scale)
    return {"psnr": psnr(truth, estimate), "ssim": ssim(truth, estimate)}
