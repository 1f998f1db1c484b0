"""Dilated depthwise convolutions on the CPU, computed as undilated ones over phase images.

With stride 1 and "same" padding, output pixel (y, x) of a convolution dilated by d
reads only input pixels whose row and column are congruent to y and x modulo d. Split
the image into its d*d phase images (every d-th row and column, from each offset) and
the dilated convolution becomes an ordinary one over d*d images a d-th the size. A
phase that comes up a row or column short is padded with zeros: they stand where the
dilated convolution reads its own zero padding, so the result is exact.

Why: oneDNN's CPU depthwise convolution is fast undilated, but on CPUs without AVX-512 it
takes a slow path when dilated. On a 2-core AVX2 EPYC, VapSR's 5x5 convolution dilated
by 3 over a channels-last 16x64x64x64 tensor took 112 ms, the same without dilation 5 ms,
and this split about 10 ms including its copies; the dilated convolution was most of
what a CPU training step or a CPU frame cost there.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from vapsr_video.model.module_swap import swap_class


def phase_split_depthwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                          dilation: int) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=dilation * (k - 1) // 2, dilation=dilation, groups=C)``.

    For an odd square kernel ``k``; the result is channels-last.
    """
    n, channels, height, width = x.shape
    d = dilation
    rows, cols = -(-height // d), -(-width // d)
    pixels = x.permute(0, 2, 3, 1)  # NHWC; a view for channels-last input
    # One strided copy per phase, straight into its place (the channel vector stays contiguous);
    # only the padding row and column of a short phase are zeroed.
    phases = x.new_empty(n, d, d, rows, cols, channels)
    for p in range(d):
        for q in range(d):
            source, target = pixels[:, p::d, q::d], phases[:, p, q]
            target[:, :source.shape[1], :source.shape[2]].copy_(source)
            target[:, source.shape[1]:].zero_()
            target[:, :, source.shape[2]:].zero_()
    out = F.conv2d(phases.view(n * d * d, rows, cols, channels).permute(0, 3, 1, 2), weight, bias,
                   padding=weight.shape[-1] // 2, groups=channels)
    out = out.permute(0, 2, 3, 1).reshape(n, d, d, rows, cols, channels)
    result = x.new_empty(n, height, width, channels)
    for p in range(d):
        for q in range(d):
            target = result[:, p::d, q::d]
            target.copy_(out[:, p, q, :target.shape[1], :target.shape[2]])
    return result.permute(0, 3, 1, 2)


def depthwise_same(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, pad: int,
                   dilation: int) -> torch.Tensor:
    """A stride-1 "same" depthwise convolution, by phase split where that is the faster way."""
    if dilation > 1 and x.device.type == "cpu":
        return phase_split_depthwise(x, weight, bias, dilation)
    return F.conv2d(x, weight, bias, 1, pad, dilation, weight.shape[0])


class PhaseSplitConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (same parameters, same names) whose CPU forward is the phase split."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depthwise_same(x, self.weight, self.bias, self.padding[0], self.dilation[0])


def is_same_depthwise(module: nn.Module) -> bool:
    """A stride-1, square, odd, "same"-padded depthwise convolution with zero padding."""
    if not isinstance(module, nn.Conv2d) or isinstance(module.padding, str):
        return False
    kernel, pad, dilation = module.kernel_size, module.padding, module.dilation
    return (module.groups == module.in_channels == module.out_channels and module.stride == (1, 1)
            and kernel[0] == kernel[1] and kernel[0] % 2 == 1 and pad[0] == pad[1] and dilation[0] == dilation[1]
            and pad[0] == dilation[0] * (kernel[0] - 1) // 2
            and module.padding_mode == "zeros")


def use_phase_split(model: nn.Module) -> int:
    """Make every dilated "same" depthwise convolution of ``model`` a ``PhaseSplitConv2d``; return how many."""
    return swap_class(model, lambda m: type(m) is nn.Conv2d and is_same_depthwise(m) and m.dilation[0] > 1,
                      PhaseSplitConv2d)
