"""Benchmarking an upscaler (or plain bicubic) on the standard SR test sets.

Follows ``../shared/design/evaluation-protocol.md``: the HR image is cropped to a
multiple of the scale, shrunk with MATLAB's bicubic (bit-exact), upscaled, the
result rounded to uint8, and compared on the Y channel with ``scale`` pixels of
border cropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vapsr_video.evaluation.benchmark_sets import benchmark_images
from vapsr_video.evaluation.metrics import psnr_y, ssim_y
from vapsr_video.imaging.bicubic import imresize, modcrop
from vapsr_video.imaging.image_files import read_rgb8
from vapsr_video.inference.upscaler import Upscaler

BICUBIC = "bicubic"

Restore = Callable[[np.ndarray], np.ndarray]  # uint8 LR (H, W, 3) -> uint8 SR (H*s, W*s, 3)


@dataclass
class ImageScore:
    image: str
    psnr: float
    ssim: float


@dataclass
class SetResult:
    """Mean PSNR/SSIM of one model at one scale on one benchmark set."""

    model: str
    scale: int
    set_name: str
    psnr: float
    ssim: float
    images: int
    seconds: float
    per_image: list[ImageScore] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def read_ground_truth(path: Path, scale: int) -> np.ndarray:
    """The HR image as uint8 RGB, cropped to a multiple of ``scale``."""
    return modcrop(read_rgb8(path), scale)


def score_image(hr: np.ndarray, scale: int, restore: Restore) -> tuple[float, float]:
    """PSNR and SSIM of ``restore`` on the MATLAB-bicubic LR version of ``hr``."""
    lr = imresize(hr, 1 / scale)
    sr = restore(lr)
    if sr.shape != hr.shape or sr.dtype != np.uint8:
        raise ValueError(f"restored image is {sr.shape} {sr.dtype}, expected {hr.shape} uint8")
    return psnr_y(sr, hr, scale), ssim_y(sr, hr, scale)


def evaluate_set(
    restore: Restore,
    scale: int,
    set_name: str,
    *,
    label: str,
    data_dir: str | Path | None = None,
    on_image: Callable[[str], None] | None = None,
) -> SetResult:
    """Score ``restore`` on every image of ``set_name``."""
    started = time.perf_counter()
    scores: list[ImageScore] = []
    for path in benchmark_images(set_name, data_dir):
        psnr, ssim = score_image(read_ground_truth(path, scale), scale, restore)
        scores.append(ImageScore(image=path.name, psnr=psnr, ssim=ssim))
        if on_image is not None:
            on_image(path.name)
    return SetResult(
        model=label,
        scale=scale,
        set_name=set_name,
        psnr=float(np.mean([s.psnr for s in scores])),
        ssim=float(np.mean([s.ssim for s in scores])),
        images=len(scores),
        seconds=time.perf_counter() - started,
        per_image=scores,
    )


def bicubic_restore(scale: int) -> Restore:
    """MATLAB-bicubic enlargement: the baseline every SR paper reports."""

    def restore(lr: np.ndarray) -> np.ndarray:
        return imresize(lr, output_shape=(lr.shape[0] * scale, lr.shape[1] * scale))

    return restore


def upscaler_restore(upscaler: Upscaler) -> Restore:
    # upscale_array clamps to [0, 1], multiplies by 255 and rounds: the protocol's uint8 step.
    return upscaler.upscale_array


def evaluate_upscaler(
    upscaler: Upscaler,
    sets: Sequence[str],
    *,
    label: str,
    data_dir: str | Path | None = None,
    on_image: Callable[[str], None] | None = None,
) -> list[SetResult]:
    """PSNR/SSIM of ``upscaler`` on each benchmark set."""
    restore = upscaler_restore(upscaler)
    return [evaluate_set(restore, upscaler.scale, name, label=label, data_dir=data_dir, on_image=on_image)
            for name in sets]


def evaluate_bicubic(
    scale: int,
    sets: Sequence[str],
    *,
    data_dir: str | Path | None = None,
    on_image: Callable[[str], None] | None = None,
) -> list[SetResult]:
    """The bicubic baseline (MATLAB bicubic down, then up) on each benchmark set."""
    restore = bicubic_restore(scale)
    return [evaluate_set(restore, scale, name, label=BICUBIC, data_dir=data_dir, on_image=on_image)
            for name in sets]
