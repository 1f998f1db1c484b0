"""Non-finite model outputs are replaced and counted; precision warnings; exact fp32 on CUDA."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from vapsr_video.inference.precision import cpu_has_native_bf16, precision_warning
from vapsr_video.inference.upscaler import Upscaler
from vapsr_video.model.vapsr import VapSR


class PoisonedModel(nn.Module):
    """``model`` with NaN written into a 2x3 block of output pixels, +inf and -inf into one pixel each."""

    def __init__(self, model: VapSR) -> None:
        super().__init__()
        self.inner = model
        self.config = model.config

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        output = self.inner(frames).clone()
        output[:, :, 4:6, 6:9] = float("nan")
        output[:, 0, 0, 0] = float("inf")
        output[:, 1, 0, 1] = float("-inf")
        return output


def test_nan_becomes_the_nearest_input_pixel_and_is_counted(tiny_model: VapSR,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    frames = torch.rand(2, 3, 8, 10, generator=torch.Generator().manual_seed(0))
    upscaler = Upscaler(model=PoisonedModel(tiny_model), device="cpu")
    # Info level (the front ends report the count per file). Listened to on the module's own logger:
    # the command line, run in-process by other tests, stops "vapsr_video" records from propagating.
    logger = logging.getLogger("vapsr_video.inference.nonfinite")
    logger.addHandler(caplog.handler)
    logger.propagate = False  # each record reaches caplog once, whatever the parents are set to
    try:
        with caplog.at_level(logging.INFO, logger=logger.name):
            result = upscaler(frames)
            upscaler(frames)
    finally:
        logger.removeHandler(caplog.handler)
        logger.propagate = True
    assert torch.isfinite(result).all()
    # output rows 4-5, columns 6-8 come from input rows 2, columns 3-4 at x2
    torch.testing.assert_close(result[:, :, 4:6, 6:8], frames[:, :, 2:3, 3:4].expand(-1, -1, 2, 2))
    torch.testing.assert_close(result[:, :, 4:6, 8], frames[:, :, 2:3, 4].expand(-1, -1, 2))
    assert (result[:, 0, 0, 0] == 1.0).all() and (result[:, 1, 0, 1] == 0.0).all()
    healthy = Upscaler(model=tiny_model, device="cpu")(frames)
    assert torch.equal(result[:, :, 8:], healthy[:, :, 8:])  # finite pixels are untouched
    assert upscaler.nonfinite_pixels == 2 * 2 * (6 + 2)  # two calls of two frames, 6 NaN + 2 inf pixels
    warnings = [r for r in caplog.records if "non-finite" in r.getMessage()]
    assert len(warnings) == 1, "warn once, not per frame"


def test_a_healthy_model_reports_no_nonfinite_pixels(tiny_model: VapSR) -> None:
    upscaler = Upscaler(model=tiny_model, device="cpu")
    upscaler(torch.rand(1, 3, 8, 8))
    assert upscaler.nonfinite_pixels == 0


@pytest.mark.parametrize("dtype, bits, expected", [
    (torch.bfloat16, 8, None), (torch.bfloat16, 10, "up to 18 code values"), (torch.bfloat16, 12, "73"),
    (torch.bfloat16, 16, "many code values"), (torch.float16, 10, None), (torch.float16, 16, None),
    (torch.float32, 16, None),
])
def test_precision_warning_only_for_bf16_deeper_than_8_bits(dtype: torch.dtype, bits: int,
                                                            expected: str | None) -> None:
    warning = precision_warning(dtype, bits)
    if expected is None:
        assert warning is None
    else:
        assert warning is not None and expected in warning and f"{bits}-bit" in warning


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path: Path) -> None:
    with_bf16 = tmp_path / "with"
    with_bf16.write_text("flags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    without = tmp_path / "without"
    without.write_text("flags\t\t: fpu sse2 avx2 avx512f avx512bw\n")
    assert cpu_has_native_bf16(with_bf16)
    assert not cpu_has_native_bf16(without)
    assert not cpu_has_native_bf16(tmp_path / "missing")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="TF32 exists only on CUDA")
def test_fp32_on_cuda_turns_tf32_convolutions_off(tiny_model: VapSR) -> None:
    torch.backends.cudnn.allow_tf32 = True
    Upscaler(model=tiny_model, device="cuda", precision="fp16")
    assert torch.backends.cudnn.allow_tf32
    Upscaler(model=tiny_model, device="cuda", precision="fp32")
    assert not torch.backends.cudnn.allow_tf32
