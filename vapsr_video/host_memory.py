"""Keep freed host memory in the process, for the CPU work of the network.

Every batch of frames (and every training step) allocates and frees the same few
dozen activation tensors of a few megabytes each. With glibc's default settings
many of them come from fresh ``mmap`` pages or from a heap top that was just
trimmed, so the kernel maps and zero-fills them again each time: 50,000-270,000
page faults per forward pass of the x2 model over four 160x90 frames, and about
20,000 per x2 training step at batch 16, on the 2-core VM. Raising the mmap and
trim thresholds makes glibc reuse the freed blocks instead; the faults drop to
none once the heap has grown to the peak of one batch, which it then keeps (the
next batch needs it a moment later anyway).

It is a process-wide setting, so the processes this project owns turn it on (the
``vapsr-video`` command, batch workers on Ray, training); a library call or the
VapourSynth filter, which run inside someone else's process, leave that process's
allocator alone.
"""

from __future__ import annotations

import ctypes
import logging
from functools import cache

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit; larger blocks are still mapped afresh
TRIM_THRESHOLD = 1 << 30


@cache
def retain_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed blocks for reuse; ``False`` where that is not glibc."""
    try:
        # The process's own symbols: libc is already loaded (find_library would run ldconfig).
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # macOS, Windows: no mallopt, nothing to do
        mallopt = None
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if not done:  # musl has mallopt, but ignores it
        log.debug("mallopt refused the thresholds; host memory is managed as the C library's defaults say")
    return done
