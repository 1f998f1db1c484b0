"""bf16 1x1 convolutions for CPU training: only where the CPU has bf16, only the 1x1 ones, same names."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from vapsr_video.model.vapsr import VapSR, published_config
from vapsr_video.training import trainer
from vapsr_video.training.cpu_bf16 import Bf16PointwiseConv2d, cpu_has_native_bf16, use_bf16_pointwise
from vapsr_video.training.trainer import precision_summary, prepare_for_training

CPU = torch.device("cpu")


def test_only_the_1x1_convolutions_switch_and_names_stay() -> None:
    model = VapSR(published_config("vapsr-s", 2))
    keys = list(model.state_dict())
    assert use_bf16_pointwise(model) == 3 * model.config.num_blocks  # proj_1, pointwise, proj_2
    assert list(model.state_dict()) == keys
    switched = [m for m in model.modules() if isinstance(m, Bf16PointwiseConv2d)]
    assert all(m.kernel_size == (1, 1) and m.weight.dtype == torch.float32 for m in switched)
    assert type(model.conv_body) is nn.Conv2d and type(model.upsampler[0]) is nn.Conv2d


def test_a_bf16_step_stays_close_to_float32_and_returns_float32() -> None:
    torch.manual_seed(0)
    exact = VapSR(published_config("vapsr-s", 2))
    mixed = VapSR(published_config("vapsr-s", 2))
    mixed.load_state_dict(exact.state_dict())
    use_bf16_pointwise(mixed)
    lr, hr = torch.rand(2, 3, 24, 24), torch.rand(2, 3, 48, 48)
    outputs = [model(lr) for model in (exact, mixed)]
    assert outputs[1].dtype == torch.float32
    assert (outputs[0] - outputs[1]).abs().max() < 4e-3  # about one 8-bit code value
    for output in outputs:
        F.l1_loss(output, hr).backward()
    gradients = [torch.cat([p.grad.flatten() for p in model.parameters()]) for model in (exact, mixed)]
    assert F.cosine_similarity(*gradients, dim=0) > 0.95
    assert all(p.grad.dtype == torch.float32 for p in mixed.parameters())


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bf16")
def test_training_uses_bf16_where_the_cpu_has_it_unless_told_fp32() -> None:
    default = prepare_for_training(VapSR(published_config("vapsr-s", 2)), CPU, bf16=True)
    assert any(isinstance(m, Bf16PointwiseConv2d) for m in default.modules())
    assert precision_summary(CPU, True) == "float32, 1x1 convolutions in bf16"
    fp32 = prepare_for_training(VapSR(published_config("vapsr-s", 2)), CPU, bf16=False)
    assert not any(isinstance(m, Bf16PointwiseConv2d) for m in fp32.modules())
    assert precision_summary(CPU, False) == "float32"


def test_a_cpu_without_bf16_trains_in_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trainer, "cpu_has_native_bf16", lambda: False)
    model = prepare_for_training(VapSR(published_config("vapsr-s", 2)), CPU, bf16=True)
    assert not any(isinstance(m, Bf16PointwiseConv2d) for m in model.modules())
    assert precision_summary(CPU, True) == "float32"
