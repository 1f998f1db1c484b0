"""Dilated depthwise convolutions by phase split: PyTorch's results, on any frame size."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from vapsr_video.model.phase_split import PhaseSplitConv2d, phase_split_depthwise, use_phase_split
from vapsr_video.model.vapsr import VapSR, published_config


@pytest.mark.parametrize("size", [(1, 1), (2, 5), (3, 3), (7, 11), (24, 20), (33, 64)])
@pytest.mark.parametrize(("kernel", "dilation"), [(5, 3), (3, 2), (5, 4)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_phase_split_equals_the_dilated_convolution(size: tuple[int, int], kernel: int, dilation: int,
                                                    channels_last: bool) -> None:
    generator = torch.Generator().manual_seed(sum(size) + kernel + dilation)
    x = torch.randn(2, 6, *size, generator=generator)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(6, 1, kernel, kernel, generator=generator)
    bias = torch.randn(6, generator=generator)
    pad = dilation * (kernel - 1) // 2
    expected = F.conv2d(x, weight, bias, 1, pad, dilation, 6)
    got = phase_split_depthwise(x, weight, bias, dilation)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(phase_split_depthwise(x, weight, None, dilation),
                               F.conv2d(x, weight, None, 1, pad, dilation, 6), rtol=1e-5, atol=1e-5)


def test_gradients_through_the_module_are_pytorchs() -> None:
    generator = torch.Generator().manual_seed(3)
    stock = nn.Conv2d(4, 4, 5, padding=6, dilation=3, groups=4, dtype=torch.float64)
    split = nn.Conv2d(4, 4, 5, padding=6, dilation=3, groups=4, dtype=torch.float64)
    split.load_state_dict(stock.state_dict())
    assert use_phase_split(split) == 1 and type(split) is PhaseSplitConv2d
    x = torch.randn(1, 4, 10, 8, dtype=torch.float64, generator=generator)
    grad_out = torch.randn(1, 4, 10, 8, dtype=torch.float64, generator=generator)
    results = []
    for module in (stock, split):
        inputs = x.clone().requires_grad_()
        out = module(inputs)
        results.append((out, *torch.autograd.grad(out, [inputs, module.weight, module.bias], grad_out)))
    for expected, got in zip(*results, strict=True):
        torch.testing.assert_close(got, expected)


def test_only_the_dilated_depthwise_convolutions_switch_and_names_stay() -> None:
    model = VapSR(published_config("vapsr-s", 4))
    names = list(model.state_dict())
    switched = use_phase_split(model)
    assert switched == 11  # one per block
    assert all((type(m) is PhaseSplitConv2d) == (name.endswith("depthwise_dilated"))
               for name, m in model.named_modules() if isinstance(m, nn.Conv2d))
    assert list(model.state_dict()) == names
