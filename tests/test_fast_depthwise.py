"""The training-only depthwise backward gives PyTorch's gradients, and leaves the model's names alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from vapsr_video.model.vapsr import VapSR, published_config
from vapsr_video.training.fast_depthwise import FastDepthwiseConv2d, depthwise_conv, use_fast_depthwise
from vapsr_video.training.native import depthwise_kernel

# (padding, dilation) of VapSR's two depthwise 5x5 convolutions
VAPSR_DEPTHWISE = [(2, 1), (6, 3)]


@pytest.mark.parametrize(("pad", "dilation"), VAPSR_DEPTHWISE)
def test_gradients_pass_gradcheck_in_float64(pad: int, dilation: int) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 9, 7, dtype=torch.float64, generator=generator, requires_grad=True)
    weight = torch.randn(2, 1, 5, 5, dtype=torch.float64, generator=generator, requires_grad=True)
    bias = torch.randn(2, dtype=torch.float64, generator=generator, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: depthwise_conv(*t, pad, dilation), (x, weight, bias))


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize(("pad", "dilation"), VAPSR_DEPTHWISE)
def test_float32_gradients_match_pytorch_on_a_training_shape(pad: int, dilation: int, threads: int,
                                                             channels_last: bool) -> None:
    assert depthwise_kernel() is not None, "the C kernel did not build (is there a C compiler?)"
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(4, 64, 24, 20, generator=generator)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(64, 1, 5, 5, generator=generator)
    bias = torch.randn(64, generator=generator)
    grad_out = torch.randn(4, 64, 24, 20, generator=generator)
    inputs = [t.clone().requires_grad_() for t in (x, weight, bias)]
    expected = torch.autograd.grad(F.conv2d(*inputs, 1, pad, dilation, 64), inputs, grad_out)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        output = depthwise_conv(*inputs, pad, dilation)
        got = torch.autograd.grad(output, inputs, grad_out)
    finally:
        torch.set_num_threads(previous)
    torch.testing.assert_close(output, F.conv2d(x, weight, bias, 1, pad, dilation, 64))
    for name, a, b in zip(("input", "weight", "bias"), got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3, msg=f"{name} gradient differs")


def test_only_vapsr_depthwise_convolutions_switch_and_names_stay() -> None:
    model = VapSR(published_config("vapsr", 2))
    keys = list(model.state_dict())
    assert use_fast_depthwise(model) == 2 * model.config.num_blocks
    assert list(model.state_dict()) == keys
    switched = [m for m in model.modules() if isinstance(m, FastDepthwiseConv2d)]
    assert all(m.groups == m.in_channels and m.kernel_size == (5, 5) for m in switched)
    strided = nn.Conv2d(8, 8, 5, padding=2, groups=8, stride=2)  # the flipped-kernel identity needs stride 1
    assert use_fast_depthwise(nn.Sequential(strided)) == 0 and type(strided) is nn.Conv2d


def test_a_vapsr_step_with_the_fast_backward_matches_the_stock_one() -> None:
    torch.manual_seed(0)
    stock = VapSR(published_config("vapsr-s", 2))
    fast = VapSR(published_config("vapsr-s", 2))
    fast.load_state_dict(stock.state_dict())
    use_fast_depthwise(fast)
    lr = torch.rand(2, 3, 20, 20)
    hr = torch.rand(2, 3, 40, 40)
    for model in (stock, fast):
        F.l1_loss(model(lr), hr).backward()
    for (name, a), b in zip(stock.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-3, atol=1e-6, msg=f"{name} gradient differs")


# Channel counts that take every path of the C kernel (pairs of vectors, one, the scalar rest) whether a
# vector has 16 lanes (AVX-512) or 8 (AVX2),
# kernel sizes it specialises (3, 5, 7) and one it hands back to PyTorch (9).
@pytest.mark.parametrize("channels", [20, 40, 64])
@pytest.mark.parametrize(("kernel", "dilation"), [(3, 1), (5, 1), (5, 3), (7, 2), (9, 1)])
def test_weight_gradient_matches_pytorch_for_any_channel_count_and_kernel(channels: int, kernel: int,
                                                                          dilation: int) -> None:
    generator = torch.Generator().manual_seed(2)
    pad = dilation * (kernel - 1) // 2
    x = torch.randn(3, channels, 13, 11, generator=generator).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(channels, 1, kernel, kernel, generator=generator, requires_grad=True)
    grad_out = torch.randn(3, channels, 13, 11, generator=generator)
    expected, = torch.autograd.grad(F.conv2d(x, weight, None, 1, pad, dilation, channels), weight, grad_out)
    got, = torch.autograd.grad(depthwise_conv(x, weight, None, pad, dilation), weight, grad_out)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_the_kernel_is_built_in_the_one_user_cache_folder(tmp_path: Path) -> None:
    # The same folder, and the same variable, as the fetched weights: one place for a user to move or clear.
    environment = {**os.environ, "VAPSR_VIDEO_CACHE_DIR": str(tmp_path)}
    code = "from vapsr_video.training.native import depthwise_kernel; assert depthwise_kernel() is not None"
    subprocess.run([sys.executable, "-c", code], env=environment, check=True, timeout=120)
    assert [p.parent for p in tmp_path.rglob("depthwise_grad-*.so")] == [tmp_path / "kernels"]
