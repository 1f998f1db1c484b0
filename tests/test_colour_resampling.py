"""Chroma resampling in banded form gives what the dense resampling matrices gave, for every chroma
layout and siting, odd sizes included, in linear time."""

from __future__ import annotations

import time

import pytest
import torch

from vapsr_video.video.colour import CHROMA_SITING, _downsample_chroma, _upsample_chroma, plane_layout


def dense_matrices(full: int, reduced: int, factor: int, siting: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The O(W^2) definition the banded form replaced: (up: full x reduced, down: reduced x full)."""
    offset = siting * (factor - 1)
    up = torch.zeros(full, reduced, dtype=torch.float64)
    position = ((torch.arange(full, dtype=torch.float64) - offset) / factor).clamp(0, reduced - 1)
    lower = position.floor().long()
    upper = (lower + 1).clamp(max=reduced - 1)
    weight = position - lower
    rows = torch.arange(full)
    up.index_put_((rows, lower), 1 - weight, accumulate=True)
    up.index_put_((rows, upper), weight, accumulate=True)
    centres = torch.arange(reduced, dtype=torch.float64) * factor + offset
    distance = (torch.arange(full, dtype=torch.float64)[None, :] - centres[:, None]).abs()
    down = (1 - distance / factor).clamp(min=0)
    down /= down.sum(dim=1, keepdim=True)
    return up, down


def dense_resample(chroma: torch.Tensor, layout, location: int, which: int) -> torch.Tensor:
    chroma = chroma.double()
    for axis in (0, 1):
        shift = layout.chroma_shift[axis]
        if shift == 0:
            continue
        full = layout.width if axis == 0 else layout.height
        reduced = layout.plane_shapes[1][1 - axis]
        matrix = dense_matrices(full, reduced, 1 << shift, CHROMA_SITING[location][axis])[which]
        chroma = chroma @ matrix.T if axis == 0 else matrix @ chroma
    return chroma


LAYOUTS = ["yuv420p", "yuv422p", "yuv440p", "yuv411p", "yuv410p"]
SIZES = [(64, 48), (63, 47), (37, 21), (9, 5), (1, 1), (2, 3)]


@pytest.mark.parametrize("pix_fmt", LAYOUTS)
@pytest.mark.parametrize("size", SIZES)
def test_banded_resampling_equals_the_dense_matrices(pix_fmt: str, size: tuple[int, int]) -> None:
    layout = plane_layout(pix_fmt, *size)
    rows, columns = layout.plane_shapes[1]
    generator = torch.Generator().manual_seed(size[0] * 100 + size[1])
    for location in CHROMA_SITING:
        small = torch.rand(2, 2, rows, columns, generator=generator) - 0.5
        large = torch.rand(2, 2, layout.height, layout.width, generator=generator) - 0.5
        up = _upsample_chroma(small, layout, location)
        down = _downsample_chroma(large, layout, location)
        assert up.shape == large.shape and down.shape == small.shape
        assert (up.double() - dense_resample(small, layout, location, 0)).abs().max() <= 1e-6
        assert (down.double() - dense_resample(large, layout, location, 1)).abs().max() <= 1e-6


def best_time(work, runs: int) -> float:
    work()  # the first call builds and caches the filters
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def test_wide_frames_resample_far_faster_than_with_dense_matrices() -> None:
    # A short, very wide strip: the dense form does rows x 8192 x 4096 multiply-adds per plane, the
    # banded form a few per sample. The margin is wide so that a busy machine cannot flip it.
    layout = plane_layout("yuv420p", 8192, 16)
    chroma = torch.rand(1, 2, 16, 8192)
    banded = best_time(lambda: _downsample_chroma(chroma, layout, 1), 20)  # about 0.5 ms each when idle
    horizontal = dense_matrices(8192, 4096, 2, CHROMA_SITING[1][0])[1].float()  # cached, as the old code had them
    vertical = dense_matrices(16, 8, 2, CHROMA_SITING[1][1])[1].float()
    dense = best_time(lambda: vertical @ (chroma @ horizontal.T), 3)  # about 250 ms each
    assert banded * 3 < dense, f"banded {banded * 1000:.1f} ms, dense {dense * 1000:.1f} ms"
