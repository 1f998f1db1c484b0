"""Small pieces the front ends need around CUDA work, each harmless on the CPU.

- :func:`use_device_in_this_thread`: PyTorch's current CUDA device is per thread and starts as
  cuda:0, so every worker thread that touches ``cuda:1`` must set it, or cuDNN handles, streams
  and caching-allocator blocks land on the wrong GPU.
- :func:`blocking_event`: a CUDA event whose ``synchronize()`` sleeps instead of spinning; a
  spinning wait burns the CPU core that the encoder (or the decoder) needs.
- :class:`PinnedBufferPool`: page-locked host buffers reused across batches, with a bound on
  the bytes it keeps, so jobs of many different frame sizes do not grow it without limit.
- :func:`release_device_memory`: give cached device memory back after a failed job, so the next
  job in the same process starts from a clean allocator; :func:`clear_failure_frames` and
  :func:`drop_traceback` first cut what an exception's traceback keeps alive (the local variables
  of every frame it passed through, device tensors included).
- :func:`shared_pinned_pool` and :func:`empty_pinned_cache`: the process-wide pool the video
  pipeline's host buffers come from, and the call that hands PyTorch's cached pinned blocks back
  to the system, so that the pool's limit is the limit.
"""

from __future__ import annotations

import gc
import threading
import traceback
import weakref
from collections import OrderedDict

import torch

# Which device each thread last bound itself to, readable from any thread (tests check that every
# thread that touches the device binds first). Weak keys: a finished thread leaves no entry behind.
_bindings: weakref.WeakKeyDictionary[threading.Thread, torch.device] = weakref.WeakKeyDictionary()
_bindings_lock = threading.Lock()


def use_device_in_this_thread(device: torch.device) -> None:
    """Make ``device`` the current CUDA device of the calling thread (nothing on the CPU).

    A bare ``cuda`` (no index) means ``cuda:0``, as :func:`~vapsr_video.inference.devices.resolve_device`
    reads it; ``torch.cuda.set_device`` itself refuses a device without an index.
    """
    if device.type == "cuda":
        torch.cuda.set_device(0 if device.index is None else device.index)
    with _bindings_lock:
        _bindings[threading.current_thread()] = device


def device_of_thread(thread: threading.Thread | None = None) -> torch.device | None:
    """The device ``thread`` (default: the calling one) last passed to :func:`use_device_in_this_thread`;
    None if it never did."""
    with _bindings_lock:
        return _bindings.get(thread or threading.current_thread())


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


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or during (each once)."""
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or any(current is known for known in seen):
            continue
        seen.append(current)
        pending += [current.__cause__, current.__context__]
    return seen


def clear_failure_frames(exc: BaseException) -> None:
    """Drop the local variables of every finished frame ``exc`` (and the exceptions chained to it)
    passed through, so the tensors they held are freed now rather than whenever the exception goes.

    The traceback stays printable (files, lines, functions); frames still running are left alone.
    """
    for link in _chain(exc):
        if link.__traceback__ is not None:
            traceback.clear_frames(link.__traceback__)


def drop_traceback(exc: BaseException) -> BaseException:
    """``exc`` with its frames cleared and no traceback at all (for failures only its type and
    message are recorded: a batch unit's); returns ``exc``."""
    clear_failure_frames(exc)
    for link in _chain(exc):
        link.__traceback__ = None
    return exc


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


# Host buffers the pool may keep between video jobs. One job's rings are what they are (a few
# batches of frames in and out); this caps only what waits for the next job, so a batch over files
# of many frame sizes does not accumulate page-locked memory, which the system cannot swap out.
PINNED_POOL_LIMIT_BYTES = 1 << 30

_shared_pool: PinnedBufferPool | None = None
_shared_pool_lock = threading.Lock()


def shared_pinned_pool() -> PinnedBufferPool:
    """The process-wide pool of pinned host buffers (at most :data:`PINNED_POOL_LIMIT_BYTES` kept free),
    shared by every job and worker thread of the process."""
    global _shared_pool
    with _shared_pool_lock:
        if _shared_pool is None:
            _shared_pool = PinnedBufferPool(PINNED_POOL_LIMIT_BYTES, pin=True)
        return _shared_pool


def empty_pinned_cache() -> None:
    """Return the pinned blocks PyTorch caches after their tensors are gone (the pool's evictions among
    them) to the system; buffers still referenced (the pool's, other jobs') stay. No-op without CUDA."""
    if not torch.cuda.is_initialized():
        return
    empty = getattr(getattr(torch, "accelerator", None), "empty_host_cache", None)  # public from torch 2.9
    if empty is None:
        empty = getattr(torch._C, "_host_emptyCache", None)
    if empty is not None:
        empty()
