"""What the pipeline's threads hand each other: bounded queues and rings of reusable host buffers.

Every blocking call gives up (raises :class:`Stopped`) as soon as the job's stop
event is set, so one failing stage, or Ctrl-C, never leaves another waiting forever.
"""

from __future__ import annotations

import queue
import threading

import torch

from vapsr_video.inference.cuda_support import PinnedBufferPool
from vapsr_video.video.colour import tensor_to_samples

QUEUE_BATCHES = 3  # batches in flight between two stages: enough to overlap, small enough to stay flat


class Stopped(Exception):
    """Raised inside a stage when another stage failed or the user interrupted."""


class Channel:
    """A bounded queue whose blocking calls give up as soon as the job is stopped."""

    def __init__(self, size: int, stop: threading.Event) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._stop = stop

    def put(self, item: object) -> None:
        while True:
            if self._stop.is_set():
                raise Stopped
            try:
                self._queue.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def get(self) -> object:
        while True:
            if self._stop.is_set():
                raise Stopped
            try:
                return self._queue.get(timeout=0.05)
            except queue.Empty:
                continue


class SlotRing:
    """A fixed set of host buffers reused round-robin (pinned on CUDA, so copies can be asynchronous).

    With a ``pool`` the buffers come from it and go back to it at :meth:`close`, so the next job of
    the same frame size reuses them instead of pinning new memory (pinning is slow), and the pool's
    limit bounds what stays pinned between jobs of different sizes.
    """

    def __init__(self, count: int, samples: int, dtype: torch.dtype, pinned: bool, stop: threading.Event,
                 pool: PinnedBufferPool | None = None) -> None:
        self._pool = pool
        if pool is not None:
            self.buffers = [pool.acquire(samples, dtype) for _ in range(count)]
        else:
            self.buffers = [torch.empty(samples, dtype=dtype, pin_memory=pinned) for _ in range(count)]
        self.arrays = [tensor_to_samples(buffer) for buffer in self.buffers]
        self._free = Channel(count, stop)
        for index in range(count):
            self._free.put(index)

    def acquire(self) -> int:
        return self._free.get()  # type: ignore[return-value]

    def release(self, index: int) -> None:
        self._free.put(index)

    def close(self) -> None:
        """Give the buffers back (to the pool, if any); the ring is unusable afterwards. The caller
        makes sure no copy still reads or writes them."""
        buffers, self.buffers, self.arrays = self.buffers, [], []
        if self._pool is not None:
            for buffer in buffers:
                self._pool.release(buffer)
