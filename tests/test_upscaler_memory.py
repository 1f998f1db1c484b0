"""Out-of-memory recovery, faked on the CPU: a model that runs out of memory above a batch size or a
frame area. The retry must happen after the failed attempt's memory is released, remember what
worked, and go back to the requested size later."""

from __future__ import annotations

import logging
import weakref

import pytest
import torch
from torch import nn

from vapsr_video.errors import VapsrError
from vapsr_video.inference.memory import MIN_TILE, RETRY_AFTER, Attempt
from vapsr_video.inference.upscaler import Upscaler
from vapsr_video.model.vapsr import VapSR


class TightMemoryModel(nn.Module):
    """``model``, but forward passes over more than ``max_batch`` frames or ``max_area`` pixels per frame
    raise ``torch.OutOfMemoryError`` (the first ``failures`` times; None: always), after allocating
    an "activation" that the traceback keeps alive."""

    def __init__(self, model: VapSR, max_batch: int = 1 << 30, max_area: int = 1 << 30,
                 failures: int | None = None) -> None:
        super().__init__()
        self.inner = model
        self.config = model.config
        self.max_batch, self.max_area, self.failures = max_batch, max_area, failures
        self.calls: list[tuple[int, int, int]] = []  # (batch, height, width) of every forward pass
        self.failed_activations: list[weakref.ref[torch.Tensor]] = []
        self.alive_at_retry: list[bool] = []

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = frames.shape
        self.calls.append((batch, height, width))
        if self.failed_activations:
            self.alive_at_retry.append(any(ref() is not None for ref in self.failed_activations))
        too_big = batch > self.max_batch or height * width > self.max_area
        if too_big and (self.failures is None or self.failures > 0):
            if self.failures is not None:
                self.failures -= 1
            activation = torch.empty(batch, 64, height, width)
            self.failed_activations.append(weakref.ref(activation))
            raise torch.OutOfMemoryError("CUDA out of memory (faked)")
        return self.inner(frames)


def frames_of(batch: int, height: int = 12, width: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def test_batch_split_retries_after_releasing_the_failed_attempt(tiny_model: VapSR) -> None:
    tight = TightMemoryModel(tiny_model, max_batch=2)
    upscaler = Upscaler(model=tight, device="cpu", recover_from_oom=True)
    frames = frames_of(4)
    result = upscaler(frames)
    expected = Upscaler(model=tiny_model, device="cpu")(frames)
    torch.testing.assert_close(result, expected, rtol=0, atol=1e-6)
    assert tight.calls == [(4, 12, 16), (2, 12, 16), (2, 12, 16)]
    # the failed pass's activation was gone before the first retry started
    assert tight.alive_at_retry and not any(tight.alive_at_retry)
    assert upscaler.memory.attempt((12, 16)) == Attempt(batch=2, tile=0)


def test_the_working_batch_is_remembered_for_later_calls(tiny_model: VapSR) -> None:
    tight = TightMemoryModel(tiny_model, max_batch=2)
    upscaler = Upscaler(model=tight, device="cpu", recover_from_oom=True)
    upscaler(frames_of(4))
    tight.calls.clear()
    upscaler(frames_of(4, seed=1))
    assert tight.calls == [(2, 12, 16), (2, 12, 16)]  # no second failure at 4


def test_a_transient_failure_does_not_shrink_for_good(tiny_model: VapSR) -> None:
    tight = TightMemoryModel(tiny_model, max_batch=2, failures=1)
    upscaler = Upscaler(model=tight, device="cpu", recover_from_oom=True)
    frames = frames_of(4)
    for _ in range(RETRY_AFTER):  # every call runs two chunks of 2, so this is twice enough
        upscaler(frames)
    assert tight.calls[-1] == (4, 12, 16), "the requested batch was never tried again"
    assert upscaler.memory.attempt((12, 16)) == upscaler.memory.requested


def test_a_new_frame_size_starts_at_the_requested_batch(tiny_model: VapSR) -> None:
    tight = TightMemoryModel(tiny_model, max_batch=2, failures=1)
    upscaler = Upscaler(model=tight, device="cpu", recover_from_oom=True)
    upscaler(frames_of(4))
    tight.calls.clear()
    upscaler(frames_of(4, height=10, width=14))
    assert tight.calls == [(4, 10, 14)]


def test_one_frame_too_large_is_tiled_and_the_tile_setting_is_kept(tiny_model: VapSR) -> None:
    tight = TightMemoryModel(tiny_model, max_area=48 * 48, failures=1)
    upscaler = Upscaler(model=tight, device="cpu", recover_from_oom=True, tile_overlap=16)
    frame = frames_of(1, height=64, width=80)
    result = upscaler(frame)
    whole = Upscaler(model=tiny_model, device="cpu")(frame)
    assert (result - whole).abs().max().item() < 1e-5  # 16 px of context cover the tiny model's field
    assert upscaler.tile == 0  # the user's setting is untouched
    assert upscaler.memory.attempt((64, 80)) == Attempt(batch=1, tile=40)


def test_out_of_memory_at_the_smallest_tile_is_a_clear_error(tiny_model: VapSR) -> None:
    tight = TightMemoryModel(tiny_model, max_area=MIN_TILE * MIN_TILE // 4)
    upscaler = Upscaler(model=tight, device="cpu", recover_from_oom=True, tile_overlap=4)
    with pytest.raises(VapsrError, match=f"out of memory on cpu even for one frame in {MIN_TILE}-pixel tiles"):
        upscaler(frames_of(2, height=64, width=64))


def test_out_of_memory_propagates_where_recovery_is_off(tiny_model: VapSR) -> None:
    tight = TightMemoryModel(tiny_model, max_batch=2)
    upscaler = Upscaler(model=tight, device="cpu")  # default on the CPU: no recovery
    assert not upscaler.recover_from_oom
    with pytest.raises(torch.OutOfMemoryError):
        upscaler(frames_of(4))


def test_a_lasting_shortage_is_retried_ever_less_often(tiny_model: VapSR, caplog: pytest.LogCaptureFixture) -> None:
    tight = TightMemoryModel(tiny_model, max_batch=2)  # batch 4 never fits
    upscaler = Upscaler(model=tight, device="cpu", recover_from_oom=True)
    frames = frames_of(4, height=6, width=8)
    with caplog.at_level(logging.INFO):
        for _ in range(3 * RETRY_AFTER):
            upscaler(frames)
    failures = sum(1 for call in tight.calls if call[0] == 4)
    # the first failure, a retry after RETRY_AFTER successful chunks, then one after twice as many
    assert failures == 3
