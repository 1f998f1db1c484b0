"""PSNR and SSIM exactly as super-resolution papers compute them.

See ``../shared/design/evaluation-protocol.md``: both are measured on the BT.601
luma (Y, studio range, kept as float), after cropping ``scale`` pixels from every
side; SSIM uses an 11 x 11 Gaussian window (sigma 1.5) without padding.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

PEAK = 255.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = (0.01 * PEAK) ** 2
SSIM_C2 = (0.03 * PEAK) ** 2
# ITU-R BT.601 luma for R, G, B in [0, 1], studio range (16 ... 235).
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])
_Y_OFFSET = 16.0


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """BT.601 Y of an H x W x 3 uint8 RGB image, as float64 on the 0-255 scale (not rounded)."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 RGB image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {image.dtype}")
    return image.astype(np.float64) @ (_Y_WEIGHTS / PEAK) + _Y_OFFSET


y_channel = rgb_to_y  # the name the training validation uses


def crop_border(image: np.ndarray, border: int) -> np.ndarray:
    if border <= 0:
        return image
    if min(image.shape[:2]) <= 2 * border:
        raise ValueError(f"image of {image.shape[1]}x{image.shape[0]} is too small to crop {border} pixels per side")
    return image[border:-border, border:-border]


def _y_pair(restored: np.ndarray, reference: np.ndarray, border: int) -> tuple[np.ndarray, np.ndarray]:
    if restored.shape != reference.shape:
        raise ValueError(f"images differ in shape: {restored.shape} vs {reference.shape}")
    return crop_border(rgb_to_y(restored), border), crop_border(rgb_to_y(reference), border)


def psnr_y(restored: np.ndarray, reference: np.ndarray, border: int = 0) -> float:
    """PSNR in dB between the Y channels of two uint8 RGB images (inf if identical)."""
    a, b = _y_pair(restored, reference, border)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(PEAK**2 / mse)


def gaussian_kernel(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """A normalised 1-D Gaussian; the 2-D window is its outer product."""
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def _filter_valid(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable 2-D correlation without padding: output shrinks by len(kernel) - 1."""
    rows = sliding_window_view(image, len(kernel), axis=0) @ kernel
    return sliding_window_view(rows, len(kernel), axis=1) @ kernel


def ssim_map_y(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The SSIM map of two float images on the 0-255 scale (Wang et al. 2004)."""
    kernel = gaussian_kernel()
    mu_a, mu_b = _filter_valid(a, kernel), _filter_valid(b, kernel)
    var_a = _filter_valid(a * a, kernel) - mu_a**2
    var_b = _filter_valid(b * b, kernel) - mu_b**2
    covariance = _filter_valid(a * b, kernel) - mu_a * mu_b
    numerator = (2 * mu_a * mu_b + SSIM_C1) * (2 * covariance + SSIM_C2)
    denominator = (mu_a**2 + mu_b**2 + SSIM_C1) * (var_a + var_b + SSIM_C2)
    return numerator / denominator


def ssim_y(restored: np.ndarray, reference: np.ndarray, border: int = 0) -> float:
    """Mean SSIM between the Y channels of two uint8 RGB images."""
    a, b = _y_pair(restored, reference, border)
    if min(a.shape) < SSIM_WINDOW:
        raise ValueError(f"images of {a.shape[1]}x{a.shape[0]} (after cropping) are smaller than the SSIM window")
    return float(ssim_map_y(a, b).mean())
