"""Running a network over a large frame tile by tile, without visible seams.

Each tile is computed with ``overlap`` pixels of real neighbouring context on
every side, and only its centre is kept, so the output is what the whole-frame
pass would give up to the (tiny) influence of pixels beyond the context.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch


def tile_origins(length: int, tile: int) -> Iterator[int]:
    yield from range(0, length, tile)


def run_tiled(
    forward: Callable[[torch.Tensor], torch.Tensor],
    frames: torch.Tensor,
    scale: int,
    tile: int,
    overlap: int,
) -> torch.Tensor:
    """``forward`` over ``frames`` (N, C, H, W) in ``tile``-sized pieces with ``overlap`` context."""
    batch, _, height, width = frames.shape
    output: torch.Tensor | None = None
    for top in tile_origins(height, tile):
        for left in tile_origins(width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            ctx_top, ctx_left = max(top - overlap, 0), max(left - overlap, 0)
            ctx_bottom, ctx_right = min(bottom + overlap, height), min(right + overlap, width)
            piece = forward(frames[:, :, ctx_top:ctx_bottom, ctx_left:ctx_right])
            if output is None:
                output = torch.empty((batch, piece.shape[1], height * scale, width * scale),
                                     dtype=piece.dtype, device=piece.device)
            y0, x0 = (top - ctx_top) * scale, (left - ctx_left) * scale
            output[:, :, top * scale:bottom * scale, left * scale:right * scale] = (
                piece[:, :, y0:y0 + (bottom - top) * scale, x0:x0 + (right - left) * scale]
            )
    assert output is not None
    return output
