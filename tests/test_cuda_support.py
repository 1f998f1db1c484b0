"""Helpers for the CUDA front ends, checked where they have CPU behaviour: the bounded buffer pool,
and the no-ops that must stay no-ops on a machine without CUDA."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from vapsr_video.inference.cuda_support import (
    PinnedBufferPool,
    blocking_event,
    release_device_memory,
    use_device_in_this_thread,
)

MIB = 1 << 20


def test_a_returned_buffer_is_reused_for_the_same_size() -> None:
    pool = PinnedBufferPool(8 * MIB, pin=False)
    first = pool.acquire(1000, torch.uint8)
    pool.release(first)
    assert pool.acquire(1000, torch.uint8) is first
    assert pool.acquire(1000, torch.int16) is not first  # another dtype is another buffer


def test_jobs_of_many_sizes_do_not_grow_the_pool_past_its_limit() -> None:
    pool = PinnedBufferPool(4 * MIB, pin=False)
    for size in range(1, 20):  # one "job" per frame size, each returning its buffers at the end
        buffers = [pool.acquire(size * MIB // 4, torch.uint8) for _ in range(2)]
        for buffer in buffers:
            pool.release(buffer)
        assert pool.kept_bytes <= 4 * MIB
    newest = pool.acquire(19 * MIB // 4, torch.uint8)  # the most recent size survived eviction
    pool.release(newest)
    assert pool.kept_bytes > 0


def test_a_buffer_larger_than_the_limit_is_not_kept() -> None:
    pool = PinnedBufferPool(MIB, pin=False)
    pool.release(pool.acquire(2 * MIB, torch.uint8))
    assert pool.kept_bytes == 0


def test_the_pool_is_safe_to_share_between_threads() -> None:
    pool = PinnedBufferPool(64 * 1024, pin=False)
    overwritten: list[int] = []

    def work(marker: int) -> None:
        for _ in range(100):
            buffer = pool.acquire(1024, torch.int64)
            buffer.fill_(marker)
            time.sleep(0)  # let the other threads run while this one holds the buffer
            if not bool((buffer == marker).all()):
                overwritten.append(marker)
            pool.release(buffer)

    threads = [threading.Thread(target=work, args=(marker,)) for marker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not overwritten, "one buffer was handed to two threads at once"
    assert pool.kept_bytes <= 64 * 1024


def test_cpu_device_helpers_do_nothing_harmful() -> None:
    cpu = torch.device("cpu")
    use_device_in_this_thread(cpu)
    assert blocking_event(cpu) is None
    release_device_memory(cpu)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_blocking_event_waits_for_device_work() -> None:
    device = torch.device("cuda")
    data = torch.rand(1 << 20, device=device)
    event = blocking_event(device)
    total = data.sum()
    event.record()
    event.synchronize()
    assert event.query()
    assert torch.isfinite(total)
