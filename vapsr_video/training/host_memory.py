"""Keep freed host memory in the process during CPU training.

A training step allocates and frees the same few dozen activation tensors of up to
about 10 MB each, every iteration. With glibc's default settings many of those
come from fresh ``mmap`` pages or from a heap top that was just trimmed, so the
kernel zero-fills them again: about 20,000 page faults (80 MB) per VapSR x2 step
at batch 16 on the 2-core VM. Raising the mmap and trim thresholds makes glibc
reuse the freed blocks instead; the faults drop to none once the heap has grown
to the step's peak, which it keeps (the training step needs it again a second
later anyway).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from functools import cache

log = logging.getLogger("vapsr_video.train")

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit; above every VapSR activation at usual batches
TRIM_THRESHOLD = 1 << 30


@cache
def retain_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed blocks for reuse; ``False`` where that is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):  # musl, macOS, Windows: no mallopt, nothing to do
        mallopt = None
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if not done:
        log.debug("mallopt refused the thresholds; host memory is managed as glibc's defaults say")
    return done
