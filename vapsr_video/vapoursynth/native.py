"""The Python end of the native plugin (plugins/vapoursynth/vapsr_plugin.c).

The C shim calls :func:`create_filter` when a script calls
``core.vapsr.Upscale(...)`` and :meth:`NativeFilter.process` for every frame.
Neither may raise: failures come back as a one-line message that the shim
turns into a ``vapoursynth.Error``.
"""

from __future__ import annotations

import atexit
import ctypes

import numpy as np

from vapsr_video.vapoursynth.formats import ClipDescription
from vapsr_video.vapoursynth.processor import FilterOptions, FrameProcessor, describe_failure

# How long interpreter exit waits for frames already inside Python; after that
# exit proceeds and the shim keeps worker threads out of the dying interpreter.
SHUTDOWN_WAIT_SECONDS = 120.0

_shutdown_hooks: set[int] = set()
_ShutdownFunction = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_double)


def _install_shutdown_hook(address: int) -> None:
    # atexit runs before the interpreter starts finalising; the C function stops
    # new calls into Python and waits (GIL released by ctypes) for running ones.
    if address and address not in _shutdown_hooks:
        _shutdown_hooks.add(address)
        atexit.register(_ShutdownFunction(address), SHUTDOWN_WAIT_SECONDS)


class NativeFilter:
    """One ``core.vapsr.Upscale`` node as seen from Python."""

    def __init__(self, processor: FrameProcessor) -> None:
        self.processor = processor
        self.dtype = processor.sample_dtype
        self.scale = processor.scale

    def _planes(self, views: tuple[memoryview, ...], width: int, height: int, stride: int) -> list[np.ndarray]:
        itemsize = self.dtype.itemsize
        return [np.ndarray((height, width), self.dtype, buffer=view, strides=(stride, itemsize)) for view in views]

    def process(self, n: int, width: int, height: int,
                src_r: memoryview, src_g: memoryview, src_b: memoryview, src_stride: int,
                dst_r: memoryview, dst_g: memoryview, dst_b: memoryview, dst_stride: int) -> str | None:
        """Fill the destination planes; ``None`` on success, else the error message."""
        try:
            sources = self._planes((src_r, src_g, src_b), width, height, src_stride)
            targets = self._planes((dst_r, dst_g, dst_b), width * self.scale, height * self.scale, dst_stride)
            self.processor.process(sources, targets)
            return None
        except BaseException as exc:  # nothing may escape into the C shim
            return describe_failure(exc, n)

    def close(self) -> None:
        self.processor = None  # type: ignore[assignment]  # drop the model now, not at garbage collection


def create_filter(width: int, height: int, color_family: int, sample_type: int, bits_per_sample: int,
                  format_name: str, num_frames: int, scale: int | None, model: str | None, weights: str | None,
                  device: str | None, num_streams: int | None, tilesize: int | None, overlap: int | None,
                  fp16: int | None, engine: str | None = None, shutdown_hook: int = 0,
                  ) -> tuple[NativeFilter | None, int, str | None]:
    """``(filter, scale, None)``, or ``(None, 0, message)`` when the arguments or the clip cannot work."""
    del num_frames  # part of the C interface; the filter does not need it
    try:
        _install_shutdown_hook(shutdown_hook)
        clip = ClipDescription(width, height, color_family, sample_type, bits_per_sample, format_name)
        options = FilterOptions(scale=scale, model=model, weights=weights, device=device, num_streams=num_streams,
                                tilesize=tilesize, overlap=overlap, fp16=fp16, engine=engine)
        processor = FrameProcessor(clip, options)
        return NativeFilter(processor), processor.scale, None
    except BaseException as exc:  # nothing may escape into the C shim
        return None, 0, describe_failure(exc)
