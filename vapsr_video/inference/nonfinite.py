"""Non-finite model outputs (NaN, +-inf): replaced before anyone quantises them, and counted.

A NaN cast to an integer code becomes 0, which shows as green blotches in YUV video,
so every output is sanitised: NaN takes the value of the input pixel it was upscaled
from (nearest neighbour, so a bad patch looks like a blocky patch of the source
rather than a hole), +inf becomes 1 and -inf 0 (what clamping would give them).

Counting must not stall a CUDA stream: each call's count is copied to pinned host
memory asynchronously and read once the copy is done, so the total is exact when
asked for (:meth:`NonFiniteCounter.total` waits for pending copies) and the warning
comes at most a few calls late.
"""

from __future__ import annotations

import logging
import threading

import torch

log = logging.getLogger(__name__)
MAX_PENDING = 64  # counts still on their way from the device; beyond this the oldest is waited for


def sanitise(output: torch.Tensor, frames: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``output`` (N, C, sH, sW) with non-finite values replaced, and the number of pixels (0-d tensor,
    on the device) that had at least one non-finite channel. ``frames`` is the (N, C, H, W) input."""
    batch, channels, height, width = frames.shape
    bad = ~torch.isfinite(output)
    count = bad.any(dim=1).sum()
    grid = output.reshape(batch, channels, height, scale, width, scale)
    nearest = frames.to(output.dtype)[:, :, :, None, :, None]
    fixed = torch.where(grid.isnan(), nearest, grid.clamp(-1.0, 2.0)).reshape(output.shape)
    # clamp(-1, 2) above turns +-inf into finite values that the caller's clamp to [0, 1] maps to 1 and 0
    return fixed, count


class NonFiniteCounter:
    """Running total of non-finite output pixels of one upscaler; thread-safe, never synchronises a stream."""

    def __init__(self) -> None:
        self._total = 0
        self._pending: list[tuple[torch.Tensor, torch.cuda.Event]] = []
        self._warned = False
        self._lock = threading.Lock()

    def add(self, count: torch.Tensor) -> None:
        """Add a 0-d count tensor produced on the current stream of its device."""
        if count.device.type != "cuda":
            self._fold(int(count))
            return
        host = torch.empty((), dtype=count.dtype, pin_memory=True)
        host.copy_(count, non_blocking=True)
        ready = torch.cuda.Event(blocking=True)
        ready.record(torch.cuda.current_stream(count.device))
        with self._lock:
            self._pending.append((host, ready))
            overflow = len(self._pending) > MAX_PENDING
        self._collect(wait=overflow)

    @property
    def total(self) -> int:
        """Non-finite pixels so far (waits for counts still being copied from the device)."""
        self._collect(wait=True)
        return self._total

    def _collect(self, wait: bool) -> None:
        with self._lock:
            arrived = 0
            for _host, ready in self._pending:
                if not ready.query():
                    if not wait:
                        break
                    ready.synchronize()
                arrived += 1
            done, self._pending = self._pending[:arrived], self._pending[arrived:]
        for host, _ in done:
            self._fold(int(host))

    def _fold(self, count: int) -> None:
        if count == 0:
            return
        with self._lock:
            self._total += count
            first = not self._warned
            self._warned = True
        if first:
            # info, not warning: the front ends report the count once per file, naming it
            log.info("the model produced %d non-finite output pixel(s) (NaN or infinity); NaN was replaced by "
                        "the nearest input pixel. Usually a sign of fp16 overflow: try --precision fp32 or bf16",
                        count)
