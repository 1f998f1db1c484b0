"""A faster backward for VapSR's depthwise convolutions, for training on the CPU.

PyTorch's CPU backward of a depthwise convolution costs 9-14 times its forward
(see docs/training.md). This one computes the same two gradients from fast parts:

- the input gradient is the forward depthwise convolution of the output gradient
  with the spatially flipped kernel (exact for stride 1 and "same" padding,
  ``pad == dilation * (kernel - 1) / 2``, which is what VapSR uses); dilated ones,
  forward and backward, go through :mod:`vapsr_video.model.phase_split`;
- the weight gradient comes from a small C loop (``depthwise_grad.c``) that does
  only the products needed, on channels-last tensors; when it cannot be built,
  from PyTorch's own backward.

Only the training model uses it: ``use_fast_depthwise`` switches the class of the
modules in place, so parameter names and checkpoints are unchanged (CPU inference
swaps in only the phase split, see ``Upscaler``).
"""

from __future__ import annotations

import ctypes

import torch
from torch import nn

from vapsr_video.model.module_swap import swap_class
from vapsr_video.model.phase_split import depthwise_same, is_same_depthwise
from vapsr_video.training.native import depthwise_kernel

MAX_NATIVE_KERNEL = 7  # MAX_KERNEL in depthwise_grad.c; larger kernels take PyTorch's backward


def native_weight_grad(library: ctypes.CDLL, x: torch.Tensor, grad_out: torch.Tensor, kernel: int, pad: int,
                       dilation: int) -> torch.Tensor:
    """The weight gradient (channels x 1 x kernel x kernel, float32) from a built ``depthwise_grad.c``."""
    channels = x.shape[1]
    # NHWC views; a no-op for the channels-last tensors VapSR's blocks pass on.
    x_nhwc = x.permute(0, 2, 3, 1).contiguous()
    grad_nhwc = grad_out.permute(0, 2, 3, 1).contiguous()
    out = torch.empty(kernel, kernel, channels)
    status = library.vapsr_depthwise_grad_weight(
        ctypes.c_void_p(x_nhwc.data_ptr()), ctypes.c_void_p(grad_nhwc.data_ptr()),
        ctypes.c_void_p(out.data_ptr()), x.shape[0], x.shape[2], x.shape[3], channels, kernel, pad,
        dilation, torch.get_num_threads())
    if status != 0:
        raise MemoryError("the depthwise weight-gradient kernel ran out of memory")
    return out.permute(2, 0, 1).unsqueeze(1)


def _weight_grad(x: torch.Tensor, grad_out: torch.Tensor, weight: torch.Tensor, pad: int,
                 dilation: int) -> torch.Tensor:
    channels, kernel = weight.shape[0], weight.shape[-1]
    eligible = x.device.type == "cpu" and x.dtype == torch.float32 and kernel <= MAX_NATIVE_KERNEL
    library = depthwise_kernel() if eligible else None
    if library is not None:
        return native_weight_grad(library, x, grad_out, kernel, pad, dilation).to(weight.dtype)
    return torch.ops.aten.convolution_backward(
        grad_out, x, weight, None, [1, 1], [pad, pad], [dilation, dilation], False, [0, 0], channels,
        [False, True, False])[1]


class _DepthwiseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, pad: int,
                dilation: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.pad, ctx.dilation, ctx.has_bias = pad, dilation, bias is not None
        return depthwise_same(x, weight, bias, pad, dilation)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = depthwise_same(grad_out, weight.flip(2, 3), None, ctx.pad, ctx.dilation)
        if ctx.needs_input_grad[1]:
            grad_weight = _weight_grad(x, grad_out, weight, ctx.pad, ctx.dilation)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_out.sum((0, 2, 3))
        return grad_x, grad_weight, grad_bias, None, None


def depthwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, pad: int,
                   dilation: int) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, 1, pad, dilation, groups=channels)`` with the faster backward."""
    return _DepthwiseConv.apply(x, weight, bias, pad, dilation)


class FastDepthwiseConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (same parameters, same names) whose backward is ``_DepthwiseConv``'s."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depthwise_conv(x, self.weight, self.bias, self.padding[0], self.dilation[0])


def is_eligible(module: nn.Module) -> bool:
    """A stride-1, square, "same"-padded depthwise convolution: where the flipped-kernel identity holds."""
    return type(module) is nn.Conv2d and is_same_depthwise(module)


def use_fast_depthwise(model: nn.Module) -> int:
    """Give every eligible depthwise convolution of ``model`` the faster backward; return how many."""
    return swap_class(model, is_eligible, FastDepthwiseConv2d)
