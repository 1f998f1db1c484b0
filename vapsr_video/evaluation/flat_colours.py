"""Colour fidelity on flat areas: how far a model moves saturated and extreme flat colours.

A large area of one colour should come back as that colour. Each colour is its
own image (VapSR's receptive field spans over 100 input pixels, so colours side
by side would bleed into each other), upscaled with the ``Upscaler`` like any
frame, and the error is read in the interior, away from the zero-padded border.

At the default size (96 pixels, 24-pixel margin) the errors of the bundled x2
and the authors' x4 match those in the centre of 140-pixel images to within one
code value (checked 2026-11-30), at under half the cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from vapsr_video.inference.upscaler import Upscaler
from vapsr_video.model.vapsr import VapSR

RGB = tuple[int, int, int]

# Primaries, secondaries, black, white, near-extremes and one saturated mid-tone.
FLAT_COLOURS: tuple[RGB, ...] = (
    (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255),
    (0, 0, 0), (255, 255, 255), (253, 0, 252), (0, 0, 253), (30, 220, 30),
)
FLAT_SIZE = 96  # input pixels on each side
INTERIOR_MARGIN = 24  # input pixels left out along each border


@dataclass(frozen=True)
class FlatColourError:
    colour: RGB
    channel_errors: RGB  # the largest |output - colour| in the interior, per channel, in 8-bit code values

    @property
    def worst(self) -> int:
        return max(self.channel_errors)


def flat_colour_errors(model: VapSR, colours: Sequence[RGB] = FLAT_COLOURS, *, size: int = FLAT_SIZE,
                       margin: int = INTERIOR_MARGIN, device: str = "cpu") -> list[FlatColourError]:
    """Upscale one flat ``size`` x ``size`` image per colour; the interior's error per channel."""
    if size <= 2 * margin:
        raise ValueError(f"a {size}-pixel image has no interior inside a {margin}-pixel margin")
    upscaler = Upscaler(model, device=device, precision="fp32")
    targets = torch.tensor(colours, dtype=torch.float32).view(-1, 3, 1, 1)
    # One batch, one image per colour: the colours never see each other.
    images = targets.div(255).expand(-1, 3, size, size).contiguous()
    outputs = upscaler(images).float().mul(255).round().cpu()
    inner = margin * upscaler.scale
    errors = (outputs[:, :, inner:-inner, inner:-inner] - targets).abs().amax(dim=(2, 3)).int().tolist()
    return [FlatColourError(tuple(colour), tuple(error)) for colour, error in zip(colours, errors, strict=True)]


def worst_flat_colour_error(model: VapSR, colours: Sequence[RGB] = FLAT_COLOURS, *,
                            device: str = "cpu") -> FlatColourError:
    """The colour this model moves most, and by how much."""
    return max(flat_colour_errors(model, colours, device=device), key=lambda result: result.worst)
