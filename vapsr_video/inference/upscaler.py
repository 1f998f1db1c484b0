"""``Upscaler``: the one inference core behind the CLI, the video pipeline, the
VapourSynth filter and the batch runner. It knows tensors, not files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from vapsr_video.choices import DEFAULT_TILE_OVERLAP
from vapsr_video.errors import VapsrError
from vapsr_video.inference.devices import resolve_device, resolve_precision
from vapsr_video.inference.tiling import run_tiled
from vapsr_video.model.vapsr import VapSR
from vapsr_video.model.weights import load_model

log = logging.getLogger(__name__)

MIN_TILE = 32  # below this the overlap dominates and an OOM is not a tiling problem
DEFAULT_OVERLAP = DEFAULT_TILE_OVERLAP


def tiling_cost(tile: int, overlap: int) -> float:
    """How many pixels tiled inference computes per output pixel (1.0: untiled; edges ignored)."""
    return ((tile + 2 * overlap) / tile) ** 2 if tile else 1.0


def _warn_if_overlap_dominates(tile: int, overlap: int) -> None:
    # Each tile is computed with ``overlap`` pixels of context on every side; once that context is as wide
    # as the tile itself the model does four times the work or more, which looks like a hang, not a choice.
    cost = tiling_cost(tile, overlap)
    if cost >= 4.0:
        log.warning("tile overlap %d around %d-pixel tiles computes about %.0fx the pixels of untiled "
                    "inference; use --tile of at least %d or a smaller --tile-overlap",
                    overlap, tile, cost, 4 * overlap)


class Upscaler:
    """Upscale batches of RGB frames, float in [0, 1], shaped (N, 3, H, W).

    Args:
        model: a loaded :class:`VapSR`; if omitted it is loaded from ``weights``,
            or the bundled weights for ``variant`` and ``scale``.
        device: ``"cuda"``, ``"cuda:N"``, ``"cpu"``; default CUDA when present.
        precision: ``"fp16"`` (CUDA default), ``"bf16"`` or ``"fp32"`` (CPU default).
        tile: split frames into tiles of this many input pixels (0: whole frames).
            On CUDA out-of-memory the tile size is halved and the batch retried.
        tile_overlap: context pixels computed around each tile and thrown away.
        channels_last: NHWC memory layout; default on CUDA, where it is faster.
    """

    def __init__(
        self,
        model: VapSR | None = None,
        *,
        weights: str | Path | None = None,
        variant: str = "vapsr",
        scale: int | None = None,
        device: str | torch.device | None = None,
        precision: str | None = None,
        tile: int = 0,
        tile_overlap: int = DEFAULT_OVERLAP,
        channels_last: bool | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        if model is None:
            model = load_model(weights, variant=variant, scale=scale)
        self.config = model.config
        self.channels_last = self.device.type == "cuda" if channels_last is None else channels_last
        if tile < 0:
            raise VapsrError(f"tile size must be 0 (whole frames) or positive, not {tile}")
        self.tile = tile
        self.tile_overlap = tile_overlap
        _warn_if_overlap_dominates(tile, tile_overlap)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model = model.to(self.device, self.dtype, memory_format=memory_format).eval().requires_grad_(False)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    @property
    def scale(self) -> int:
        return self.config.scale

    @property
    def variant(self) -> str:
        return self.config.variant

    def _forward(self, frames: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            frames = frames.contiguous(memory_format=torch.channels_last)
        return self.model(frames)

    def _run(self, frames: torch.Tensor, tile: int) -> torch.Tensor:
        _, _, height, width = frames.shape
        if tile and (height > tile or width > tile):
            return run_tiled(self._forward, frames, self.scale, tile, self.tile_overlap)
        return self._forward(frames)

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """Upscale ``frames`` (N, 3, H, W) or (3, H, W); the result is clamped to
        [0, 1], lives on this upscaler's device and keeps the input's dtype."""
        single = frames.dim() == 3
        if single:
            frames = frames.unsqueeze(0)
        if frames.dim() != 4 or frames.shape[1] != 3:
            raise ValueError(f"expected frames shaped (N, 3, H, W), got {tuple(frames.shape)}")
        out_dtype = frames.dtype if frames.dtype.is_floating_point else self.dtype
        frames = frames.to(self.device, self.dtype, non_blocking=True)
        result = self._run_with_memory_fallback(frames).clamp_(0.0, 1.0).to(out_dtype)
        return result[0] if single else result

    def _run_with_memory_fallback(self, frames: torch.Tensor) -> torch.Tensor:
        tile = self.tile
        while True:
            try:
                return self._run(frames, tile)
            except torch.OutOfMemoryError:
                if self.device.type != "cuda":
                    raise
                torch.cuda.empty_cache()
                if frames.shape[0] > 1:
                    # Fewer frames at once costs nothing in quality; try that first.
                    half = frames.shape[0] // 2
                    return torch.cat([self._run_with_memory_fallback(frames[:half]),
                                      self._run_with_memory_fallback(frames[half:])])
                current = tile or max(frames.shape[2:])
                tile = current // 2
                if tile < MIN_TILE:
                    raise VapsrError(
                        f"CUDA out of memory on {self.device} even with {MIN_TILE}-pixel tiles"
                    ) from None
                log.warning("CUDA out of memory; retrying with %d-pixel tiles", tile)
                self.tile = tile  # later frames of the same size would fail the same way

    def upscale_array(self, image: np.ndarray) -> np.ndarray:
        """Upscale one H x W x 3 image (uint8, uint16 or float in [0, 1]); same dtype back."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an H x W x 3 RGB image, got shape {image.shape}")
        if image.dtype == np.uint8 or image.dtype == np.uint16:
            peak = float(np.iinfo(image.dtype).max)
            tensor = torch.from_numpy(image.astype(np.float32) / peak)
        else:
            peak = None
            tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        result = self(tensor.permute(2, 0, 1)).float().permute(1, 2, 0).cpu().numpy()
        if peak is None:
            return result.astype(image.dtype)
        return np.rint(result * peak).astype(image.dtype)
