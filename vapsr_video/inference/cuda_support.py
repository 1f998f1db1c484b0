"""Small pieces the front ends need around CUDA work, each harmless on the CPU.

- :func:`use_device_in_this_thread`: PyTorch's current CUDA device is per thread and starts as
  cuda:0, so every worker thread that touches ``cuda:1`` must set it, or cuDNN handles, streams
  and caching-allocator blocks land on the wrong GPU.
- :func:`blocking_event`: a CUDA event whose ``synchronize()`` sleeps instead of spinning; a
  spinning wait burns the CPU core that the encoder (or the decoder) needs.
- :class:`PinnedBufferPool`: page-locked host buffers reused across batches, with a bound on
  the bytes it keeps, so jobs of many different frame sizes do not grow it without limit.
- :func:`release_device_memory`: give cached device memory back after a failed job, so the next
  job in the same process starts from a clean allocator.
"""

from __future__ import annotations

import gc
import threading
from collections import OrderedDict

import torch


def use_device_in_this_thread(device: torch.device) -> None:
    """Make ``device`` the current CUDA device of the calling thread (nothing on the CPU)."""
    if device.type == "cuda":
        torch.cuda.set_device(device)


def blocking_event(device: torch.device) -> torch.cuda.Event | None:
    """An event to record on ``device``'s stream and wait for without spinning; None on the CPU."""
    if device.type != "cuda":
        return None
    return torch.cuda.Event(blocking=True)


def release_device_memory(device: torch.device) -> None:
    """Free what a failed job left: unreachable tensors (reference cycles through tracebacks), then
    the allocator's cached blocks."""
    gc.collect()
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.empty_cache()


Key = tuple[int, torch.dtype]


class PinnedBufferPool:
    """Flat host buffers by (length, dtype), pinned when ``pin`` (CUDA present), at most ``limit_bytes``
    kept between uses. Thread-safe.

    Buffers in use are never taken back; when keeping a returned buffer would exceed the limit, the
    least recently returned free buffers (of any size) are dropped first, and the returned one too if
    it alone does not fit.
    """

    def __init__(self, limit_bytes: int, *, pin: bool | None = None) -> None:
        self.limit_bytes = limit_bytes
        self.pin = torch.cuda.is_available() if pin is None else pin
        self._free: OrderedDict[int, tuple[Key, torch.Tensor]] = OrderedDict()  # id -> buffer, oldest first
        self._kept_bytes = 0
        self._lock = threading.Lock()

    @property
    def kept_bytes(self) -> int:
        """Bytes held in free buffers now."""
        with self._lock:
            return self._kept_bytes

    def acquire(self, length: int, dtype: torch.dtype) -> torch.Tensor:
        """A buffer of exactly ``length`` elements: a free one of that size, or a new one."""
        key = (length, dtype)
        with self._lock:
            for identity, (buffer_key, buffer) in self._free.items():
                if buffer_key == key:
                    del self._free[identity]
                    self._kept_bytes -= _bytes(buffer)
                    return buffer
        return torch.empty(length, dtype=dtype, pin_memory=self.pin)

    def release(self, buffer: torch.Tensor) -> None:
        """Return a buffer from :meth:`acquire` for reuse (it must no longer be read or written)."""
        size = _bytes(buffer)
        if size > self.limit_bytes:
            return  # dropped: larger than everything the pool may keep
        with self._lock:
            while self._kept_bytes + size > self.limit_bytes and self._free:
                _, (_, oldest) = self._free.popitem(last=False)
                self._kept_bytes -= _bytes(oldest)
            self._free[id(buffer)] = ((buffer.numel(), buffer.dtype), buffer)
            self._kept_bytes += size

    def clear(self) -> None:
        """Drop every free buffer (e.g. at the end of a job)."""
        with self._lock:
            self._free.clear()
            self._kept_bytes = 0


def _bytes(buffer: torch.Tensor) -> int:
    return buffer.numel() * buffer.element_size()
