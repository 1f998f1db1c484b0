"""Quality metrics of the SR papers: PSNR and SSIM on the BT.601 luma channel."""

from __future__ import annotations

import numpy as np


def y_channel(rgb: np.ndarray) -> np.ndarray:
    """BT.601 studio-range luma of a uint8 RGB image, as float (not rounded)."""
    rgb = rgb.astype(np.float64) / 255.0
    return 16.0 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]


def psnr_y(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
    """PSNR (peak 255) between the luma of two uint8 RGB images, ``border`` pixels cropped."""
    a, b = y_channel(sr), y_channel(hr)
    if border:
        a, b = a[border:-border, border:-border], b[border:-border, border:-border]
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)
