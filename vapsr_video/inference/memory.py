"""How many frames, and what tile size, to run at once after the device ran out of memory.

The plan is kept per input frame size. After an out-of-memory error the batch is
halved first (fewer frames at once costs nothing in quality), then the tile. What
worked is remembered, so later calls of the same size do not fail again; but an
out-of-memory error can be transient (another stream, another process, a fragmented
cache), so after some successful calls the requested size is tried again. If that
fails once more, the wait before the next try doubles (up to a limit), so a
device that really is too small costs one failed attempt every few hundred calls.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from vapsr_video.errors import VapsrError

MIN_TILE = 32  # below this the overlap dominates and an out-of-memory error is not a tiling problem
RETRY_AFTER = 16  # successful calls at a reduced size before the requested size is tried again
MAX_RETRY_AFTER = 1024


@dataclass(frozen=True)
class Attempt:
    """One way to run a call: at most ``batch`` frames at once (None: all of them), ``tile`` (0: whole frames)."""

    batch: int | None
    tile: int


@dataclass
class _Reduced:
    """A size that worked after a failure, and when to try the requested size again."""

    attempt: Attempt
    retry_after: int
    successes: int = 0


class MemoryPlanner:
    """Remembers, per frame size (height, width), the largest batch and tile that fit. Thread-safe."""

    def __init__(self, tile: int, *, retry_after: int = RETRY_AFTER) -> None:
        self.requested = Attempt(batch=None, tile=tile)
        self.base_retry_after = retry_after
        self._reduced: dict[tuple[int, int], _Reduced] = {}
        self._backoff: dict[tuple[int, int], int] = {}  # retry interval for the next reduction of a size
        self._lock = threading.Lock()

    def attempt(self, size: tuple[int, int]) -> Attempt:
        """What to try for frames of ``size``: the remembered reduction, or the requested size."""
        with self._lock:
            reduced = self._reduced.get(size)
            return self.requested if reduced is None else reduced.attempt

    def succeeded(self, size: tuple[int, int], attempt: Attempt) -> None:
        """A chunk ran with ``attempt``; after enough of these at a reduced size, go back to the requested one."""
        with self._lock:
            if attempt == self.requested:
                self._backoff.pop(size, None)  # the requested size fits again: forget past failures
                return
            reduced = self._reduced.get(size)
            if reduced is None or reduced.attempt != attempt:
                return
            reduced.successes += 1
            if reduced.successes >= reduced.retry_after:
                del self._reduced[size]

    def failed(self, size: tuple[int, int], attempt: Attempt, frames: int) -> Attempt:
        """``attempt`` ran out of memory on a chunk of ``frames`` frames: the next, smaller attempt.

        Raises :class:`VapsrError` when even one frame in ``MIN_TILE``-pixel tiles does not fit.
        """
        if frames > 1:
            smaller = Attempt(batch=frames // 2, tile=attempt.tile)
        else:
            tile = (attempt.tile or max(size)) // 2
            if tile < MIN_TILE:
                raise VapsrError(f"out of memory even for one frame in {MIN_TILE}-pixel tiles")
            smaller = Attempt(batch=1, tile=tile)
        with self._lock:
            previous = self._reduced.get(size)
            if previous is None:  # leaving the requested size: wait longer each time it fails again
                retry_after = self._backoff.get(size, self.base_retry_after)
                self._backoff[size] = min(retry_after * 2, MAX_RETRY_AFTER)
            else:
                retry_after = previous.retry_after
            self._reduced[size] = _Reduced(smaller, retry_after)
        return smaller
