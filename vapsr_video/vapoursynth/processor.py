"""Upscaling one VapourSynth frame: the part shared by the native plugin and its Python twin.

Both front ends hand :meth:`FrameProcessor.process` the three planes of a source
frame and of the (larger) destination frame as numpy arrays; the pixels go
through the same :class:`~vapsr_video.inference.Upscaler` as on the command
line, so the plugin, the twin and the CLI give the same numbers.

VapourSynth calls :meth:`FrameProcessor.process` from its own worker threads, so each call first
makes the filter's device the thread's current CUDA device (PyTorch keeps one per thread, starting
at cuda:0; without it a filter on cuda:1 would also create a context on cuda:0), and waits for its
frame on a blocking event, which sleeps rather than spinning on a core VapourSynth needs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vapsr_video.choices import ENGINES
from vapsr_video.errors import UsageError, VapsrError, WeightsError
from vapsr_video.inference.cuda_support import use_device_in_this_thread
from vapsr_video.inference.devices import resolve_device
from vapsr_video.inference.options import ModelOptions
from vapsr_video.inference.upscaler import DEFAULT_OVERLAP
from vapsr_video.model.vapsr import VARIANTS
from vapsr_video.model.weights import WEIGHTS_ENV, bundled_weights_path, default_weights_path
from vapsr_video.vapoursynth.formats import FILTER_NAME, ClipDescription, plane_dtype

log = logging.getLogger(__name__)

SCALES = (2, 3, 4)
DEFAULT_STREAMS_CUDA = 2  # one frame computing while the next one's upload overlaps it
DEFAULT_STREAMS_CPU = 1  # torch already spreads one frame over every core
# Frames in flight at once: each holds its input, output and activations, so a huge number would
# only queue memory (and 2**40 once made vspipe hang allocating slots); 16 is far past any speed-up.
MAX_STREAMS = 16


@dataclass(frozen=True)
class FilterOptions:
    """The user's arguments, ``None`` where not given (the defaults are resolved here)."""

    scale: int | None = None
    model: str | None = None
    weights: str | Path | None = None
    device: str | None = None
    num_streams: int | None = None
    tilesize: int | None = None
    overlap: int | None = None
    fp16: bool | int | None = None
    engine: str | None = None  # "eager" (default), "compile", "cuda-graphs": as the CLI's --engine


def _check_options(options: FilterOptions) -> None:
    if options.scale is not None and options.scale not in SCALES:
        raise UsageError(f"{FILTER_NAME}: scale must be 2, 3 or 4, not {options.scale}")
    if options.model is not None and options.model not in VARIANTS:
        raise UsageError(f"{FILTER_NAME}: model must be one of {', '.join(map(repr, VARIANTS))}, not {options.model!r}")
    if options.num_streams is not None and not 1 <= options.num_streams <= MAX_STREAMS:
        raise UsageError(f"{FILTER_NAME}: num_streams must be from 1 to {MAX_STREAMS}, not {options.num_streams}")
    if options.tilesize is not None and options.tilesize < 0:
        raise UsageError(f"{FILTER_NAME}: tilesize must be 0 (whole frames) or positive, not {options.tilesize}")
    if options.overlap is not None and options.overlap < 0:
        raise UsageError(f"{FILTER_NAME}: overlap must be 0 or positive, not {options.overlap}")
    if options.engine is not None and options.engine not in ENGINES:
        raise UsageError(f"{FILTER_NAME}: engine must be one of {', '.join(map(repr, ENGINES))}, "
                         f"not {options.engine!r}")


def _precision(options: FilterOptions, sample_dtype: np.dtype, device: torch.device) -> str:
    """fp16 follows the clip format unless asked; the CPU always computes in fp32."""
    if device.type != "cuda":
        if options.fp16:
            raise UsageError(
                f"{FILTER_NAME}: fp16=True needs a CUDA device; on the CPU the filter computes in fp32 "
                "(RGBH clips are converted at the boundary), so leave fp16 unset"
            )
        return "fp32"
    wants_fp16 = sample_dtype == np.float16 if options.fp16 is None else bool(options.fp16)
    return "fp16" if wants_fp16 else "fp32"


def _default_weights(options: FilterOptions) -> Path:
    variant, scale = options.model or "vapsr", options.scale or 2
    if os.environ.get(WEIGHTS_ENV):
        return default_weights_path(options.model, options.scale)  # its errors name the variable
    try:
        return bundled_weights_path(variant, scale)
    except WeightsError:
        raise WeightsError(
            f"{FILTER_NAME}: no bundled weights for {variant} x{scale} in this installation; "
            'pass weights="FILE" (a VapSR checkpoint, e.g. the authors\' VapSR_X2.pth)'
        ) from None


class _Slots:
    """At most ``count`` frames computing at once, each with its own CUDA stream (or None on the CPU)."""

    def __init__(self, device: torch.device, count: int) -> None:
        self._free: queue.SimpleQueue[torch.cuda.Stream | None] = queue.SimpleQueue()
        for _ in range(count):
            self._free.put(torch.cuda.Stream(device) if device.type == "cuda" else None)

    @contextlib.contextmanager
    def acquire(self) -> Iterator[torch.cuda.Stream | None]:
        stream = self._free.get()  # blocks with the GIL released
        try:
            yield stream
        finally:
            self._free.put(stream)


class FrameProcessor:
    """Upscales frames of one clip with fixed settings; safe to call from several threads."""

    def __init__(self, clip: ClipDescription, options: FilterOptions) -> None:
        _check_options(options)
        self.sample_dtype = plane_dtype(clip)
        device = resolve_device(options.device)
        self.upscaler = ModelOptions(
            weights=str(options.weights) if options.weights is not None else str(_default_weights(options)),
            scale=options.scale,
            precision=_precision(options, self.sample_dtype, device),
            tile=options.tilesize or 0,
            tile_overlap=DEFAULT_OVERLAP if options.overlap is None else options.overlap,
            engine=options.engine or "eager",
        ).build(device)
        default_streams = DEFAULT_STREAMS_CUDA if device.type == "cuda" else DEFAULT_STREAMS_CPU
        self.num_streams = options.num_streams or default_streams
        self._slots = _Slots(device, self.num_streams)

    @property
    def scale(self) -> int:
        return self.upscaler.scale

    @property
    def device(self) -> torch.device:
        return self.upscaler.device

    def process(self, sources: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> None:
        """Upscale the R, G, B planes ``sources`` (H x W) into ``targets`` (sH x sW), same dtype."""
        use_device_in_this_thread(self.device)
        frame = torch.from_numpy(np.stack(sources))  # a contiguous copy: the frame memory is not ours
        with self._slots.acquire() as stream:
            output = self.upscaler(frame).numpy() if stream is None else self._process_on_stream(frame, stream)
        for target, plane in zip(targets, output, strict=True):
            np.copyto(target, plane)

    def _process_on_stream(self, frame: torch.Tensor, stream: torch.cuda.Stream) -> np.ndarray:
        with torch.cuda.device(self.device), torch.cuda.stream(stream):
            staged = frame.pin_memory()  # pinned, so the upload is asynchronous on this stream
            result = self.upscaler(staged)
            host = torch.empty(result.shape, dtype=result.dtype, pin_memory=True)
            host.copy_(result, non_blocking=True)
            copied = torch.cuda.Event(blocking=True)
            copied.record(stream)
        copied.synchronize()
        return host.numpy()


def describe_failure(exc: BaseException, frame: int | None = None) -> str:
    """A one-line message for an exception raised while creating the filter or computing a frame."""
    where = f" at frame {frame}" if frame is not None else ""
    if isinstance(exc, VapsrError):
        text = " ".join(str(exc).split())
        return text if text.startswith(FILTER_NAME) else f"{FILTER_NAME}{where}: {text}"
    if isinstance(exc, torch.OutOfMemoryError):
        return (f"{FILTER_NAME}{where}: CUDA out of memory; pass a smaller tilesize (e.g. tilesize=256) "
                "or fewer num_streams")
    log.debug("%s failed%s", FILTER_NAME, where, exc_info=exc)
    detail = " ".join(str(exc).split())[:500] or "no details"
    return f"{FILTER_NAME}{where}: internal error: {type(exc).__name__}: {detail}"
