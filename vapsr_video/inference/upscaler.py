"""``Upscaler``: the one inference core behind the CLI, the video pipeline, the
VapourSynth filter and the batch runner. It knows tensors, not files."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import torch

from vapsr_video.choices import DEFAULT_TILE_OVERLAP
from vapsr_video.errors import VapsrError
from vapsr_video.inference.cuda_support import release_device_memory
from vapsr_video.inference.devices import resolve_device, resolve_precision
from vapsr_video.inference.engines import make_engine
from vapsr_video.inference.memory import MIN_TILE, Attempt, MemoryPlanner
from vapsr_video.inference.nonfinite import NonFiniteCounter, sanitise
from vapsr_video.inference.precision import cpu_has_native_bf16, use_exact_fp32_convolutions
from vapsr_video.inference.tiling import run_tiled
from vapsr_video.model.phase_split import use_phase_split
from vapsr_video.model.vapsr import VapSR
from vapsr_video.model.weights import load_model

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_OVERLAP", "MIN_TILE", "Upscaler"]

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
            fp32 on CUDA turns TF32 convolutions off, so it reproduces CPU results.
        tile: split frames into tiles of this many input pixels (0: whole frames).
        tile_overlap: context pixels computed around each tile and thrown away.
        channels_last: NHWC memory layout; default on CUDA, where it is faster.
        engine: ``"eager"`` (default), ``"compile"`` (``torch.compile``, CPU or CUDA) or
            ``"cuda-graphs"`` (CUDA only); see :mod:`vapsr_video.inference.engines`.
        recover_from_oom: on out-of-memory, free memory and retry with fewer frames at once,
            then smaller tiles (see :mod:`vapsr_video.inference.memory`). Default: on CUDA only,
            the one device where an out-of-memory error is worth retrying.

    ``nonfinite_pixels`` counts output pixels where the model produced NaN or infinity
    (replaced before clamping; see :mod:`vapsr_video.inference.nonfinite`).
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
        engine: str = "eager",
        recover_from_oom: bool | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        if tile < 0:
            raise VapsrError(f"tile size must be 0 (whole frames) or positive, not {tile}")
        if model is None:
            model = load_model(weights, variant=variant, scale=scale)
        self.config = model.config
        self.channels_last = self.device.type == "cuda" if channels_last is None else channels_last
        self.tile = tile
        self.tile_overlap = tile_overlap
        self.recover_from_oom = self.device.type == "cuda" if recover_from_oom is None else recover_from_oom
        _warn_if_overlap_dominates(tile, tile_overlap)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model = model.to(self.device, self.dtype, memory_format=memory_format).eval().requires_grad_(False)
        if self.device.type == "cpu":
            # Same parameters, same output; the model runs about 6x faster where oneDNN's dilated path is slow.
            use_phase_split(self.model)
        self.engine = make_engine(engine, self.model, self.device)
        self.memory = MemoryPlanner(tile)
        self._nonfinite = NonFiniteCounter()
        self._largest_batch: dict[tuple[int, int], int] = {}  # per frame size, for static-shape engines
        self._lock = threading.Lock()
        if self.device.type == "cpu" and self.dtype == torch.bfloat16 and not cpu_has_native_bf16():
            log.warning("this CPU has no native bf16 (AVX512-BF16 or AMX): bf16 is emulated and slower than fp32")
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            if self.dtype == torch.float32:
                use_exact_fp32_convolutions()

    @property
    def scale(self) -> int:
        return self.config.scale

    @property
    def variant(self) -> str:
        return self.config.variant

    @property
    def nonfinite_pixels(self) -> int:
        """Output pixels so far where the model gave NaN or infinity (0 for a healthy model)."""
        return self._nonfinite.total

    def _forward(self, frames: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            frames = frames.contiguous(memory_format=torch.channels_last)
        return self.engine(frames)

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
        output = self._run_with_memory_fallback(frames)
        output, nonfinite = sanitise(output, frames, self.scale)
        self._nonfinite.add(nonfinite)
        result = output.clamp_(0.0, 1.0).to(out_dtype)
        return result[0] if single else result

    def _run_with_memory_fallback(self, frames: torch.Tensor) -> torch.Tensor:
        """Run ``frames`` in chunks as the memory plan for their size says; on out-of-memory
        shrink the plan and retry the failed chunk (only after leaving the ``except`` block)."""
        count = frames.shape[0]
        size = (frames.shape[2], frames.shape[3])
        attempt = self.memory.attempt(size)
        output: torch.Tensor | None = None
        done = 0
        while done < count:
            chunk_size = min(attempt.batch or count, count - done)
            chunk = frames[done:done + chunk_size]
            failed = False
            try:
                piece = self._run_chunk(chunk, attempt)
            except torch.OutOfMemoryError:
                if not self.recover_from_oom:
                    raise
                # Only note it: the exception's traceback holds every frame of the failed forward pass,
                # and with them its activations, until this block is left.
                failed = True
            if failed:
                release_device_memory(self.device)  # unreachable tensors, then the allocator's cache
                attempt = self._smaller_attempt(size, attempt, chunk_size)
                continue
            self.memory.succeeded(size, attempt)
            if chunk_size == count:
                return piece
            if output is None:
                output = torch.empty((count, *piece.shape[1:]), dtype=piece.dtype, device=piece.device)
            output[done:done + chunk_size] = piece
            done += chunk_size
        assert output is not None
        return output

    def _run_chunk(self, chunk: torch.Tensor, attempt: Attempt) -> torch.Tensor:
        """One chunk; static-shape engines get the last, partial batch padded to the usual batch size."""
        if not self.engine.static_shapes:
            return self._run(chunk, attempt.tile)
        count = chunk.shape[0]
        size = (chunk.shape[2], chunk.shape[3])
        with self._lock:
            usual = max(self._largest_batch.get(size, 0), count)
            self._largest_batch[size] = usual
        target = min(usual, attempt.batch or usual)
        if count >= target:
            return self._run(chunk, attempt.tile)
        padding = chunk[-1:].expand(target - count, *chunk.shape[1:])
        return self._run(torch.cat([chunk, padding]), attempt.tile)[:count]

    def _smaller_attempt(self, size: tuple[int, int], attempt: Attempt, frames: int) -> Attempt:
        try:
            smaller = self.memory.failed(size, attempt, frames)
        except VapsrError:
            raise VapsrError(f"out of memory on {self.device} even for one frame in {MIN_TILE}-pixel tiles") from None
        if smaller.batch != attempt.batch:
            log.info("out of memory on %s; retrying %d frame(s) at a time", self.device, smaller.batch)
        else:
            log.warning("out of memory on %s for one frame; retrying with %d-pixel tiles", self.device, smaller.tile)
        return smaller

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
