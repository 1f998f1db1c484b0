"""The inference core: exact on the CPU, seamless when tiled, clamped, and strict about devices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vapsr_video.errors import UsageError
from vapsr_video.inference.upscaler import DEFAULT_OVERLAP, Upscaler
from vapsr_video.model.phase_split import PhaseSplitConv2d
from vapsr_video.model.vapsr import VapSR
from vapsr_video.model.weights import load_model


def plain_forward(model: VapSR, frames: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(frames).clamp(0, 1)


def test_fp32_cpu_output_equals_a_plain_forward_pass(tiny_model: VapSR) -> None:
    frames = torch.rand(2, 3, 20, 28, generator=torch.Generator().manual_seed(0))
    stock = plain_forward(tiny_model, frames)
    upscaler = Upscaler(model=tiny_model, device="cpu")
    result = upscaler(frames)
    assert result.shape == (2, 3, 40, 56)
    assert result.dtype == torch.float32 and result.device.type == "cpu"
    assert torch.equal(result, plain_forward(upscaler.model, frames))  # nothing added around the model
    torch.testing.assert_close(result, stock, rtol=0, atol=1e-6)  # its CPU kernels are the stock ones' sums


def test_reference_checkpoint_output_equals_a_plain_forward_pass(reference_weights_dir: Path) -> None:
    model = load_model(reference_weights_dir / "VapSR-S.pth")
    frames = torch.rand(1, 3, 24, 20, generator=torch.Generator().manual_seed(1))
    stock = plain_forward(model, frames)
    upscaler = Upscaler(model=model, device="cpu")
    # The CPU's faster dilated convolution (model/phase_split.py): the same sums in another layout
    # (bit-identical on the AVX2 CPU it was measured on; allowed the last bits elsewhere).
    assert sum(isinstance(m, PhaseSplitConv2d) for m in upscaler.model.modules()) == 11
    result = upscaler(frames)
    assert torch.equal(result, plain_forward(upscaler.model, frames))
    torch.testing.assert_close(result, stock, rtol=0, atol=1e-6)


def test_single_frame_and_batch_give_the_same_pixels(tiny_model: VapSR) -> None:
    frames = torch.rand(3, 3, 16, 12, generator=torch.Generator().manual_seed(2))
    upscaler = Upscaler(model=tiny_model, device="cpu")
    batch = upscaler(frames)
    single = upscaler(frames[1])
    assert single.shape == (3, 32, 24)
    torch.testing.assert_close(single, batch[1], rtol=0, atol=1e-6)


def test_tiled_equals_untiled_within_one_level_with_the_x4_checkpoint(reference_weights_dir: Path) -> None:
    # x4 with its 21 blocks has the widest receptive field of the published models,
    # and uniform noise is the worst case for seams. A tall strip cut into three tiles
    # keeps the test cheap while the outer tiles still lose real context.
    model = load_model(reference_weights_dir / "VapSR_X4.pth")
    frames = torch.rand(1, 3, 72, 32, generator=torch.Generator().manual_seed(3))
    tile = 24
    assert frames.shape[2] > tile + DEFAULT_OVERLAP, "the frame must be big enough for tiles to lose context"
    whole = Upscaler(model=model, device="cpu")(frames)
    tiled = Upscaler(model=model, device="cpu", tile=tile)(frames)
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max().item() <= 1 / 255


def test_tiles_without_overlap_show_seams(tiny_model_factory) -> None:
    # The counterpart of the test above: without context the tiles do differ, so the
    # comparison there can fail.
    model = tiny_model_factory(scale=2)
    frames = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(4))
    whole = Upscaler(model=model, device="cpu")(frames)
    no_context = Upscaler(model=model, device="cpu", tile=16, tile_overlap=0)(frames)
    with_context = Upscaler(model=model, device="cpu", tile=16, tile_overlap=16)(frames)
    assert (no_context - whole).abs().max().item() > 1 / 255
    assert (with_context - whole).abs().max().item() < 1e-5  # 16 px covers one block's field


def test_output_is_clamped_to_the_unit_range(tiny_model_factory) -> None:
    model = tiny_model_factory(scale=2)
    with torch.no_grad():  # push some outputs far below 0 and others far above 1
        model.upsampler[2].bias.copy_(torch.linspace(-3, 3, model.upsampler[2].bias.numel()))
    frames = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        raw = model(frames)
    assert raw.min() < -0.5 and raw.max() > 1.5
    result = Upscaler(model=model, device="cpu")(frames)
    assert result.min().item() == 0.0 and result.max().item() == 1.0


def test_fp16_on_the_cpu_is_a_usage_error(tiny_model: VapSR) -> None:
    with pytest.raises(UsageError, match="fp16 needs a CUDA device"):
        Upscaler(model=tiny_model, device="cpu", precision="fp16")


@pytest.mark.parametrize("device", ["tpu", "gpu0", "mps"])
def test_unknown_device_is_a_usage_error(tiny_model: VapSR, device: str) -> None:
    with pytest.raises(UsageError, match=device):
        Upscaler(model=tiny_model, device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_usage_error(tiny_model: VapSR) -> None:
    with pytest.raises(UsageError, match=r"not available \(this machine has 0 CUDA device"):
        Upscaler(model=tiny_model, device="cuda")


def test_bf16_on_the_cpu_runs_and_stays_close(tiny_model: VapSR) -> None:
    frames = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    exact = Upscaler(model=tiny_model, device="cpu")(frames)
    approximate = Upscaler(model=tiny_model, device="cpu", precision="bf16")(frames)
    assert approximate.dtype == torch.float32  # the caller's dtype comes back
    assert (approximate - exact).abs().max().item() < 0.05


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_upscale_array_keeps_the_dtype_and_rounds_like_the_tensor_path(tiny_model: VapSR, dtype: type) -> None:
    rng = np.random.default_rng(7)
    if np.issubdtype(dtype, np.integer):
        peak = np.iinfo(dtype).max
        image = rng.integers(0, peak + 1, (10, 14, 3)).astype(dtype)
        unit = image.astype(np.float32) / peak
    else:
        peak = None
        image = unit = rng.random((10, 14, 3), dtype=np.float32)
    upscaler = Upscaler(model=tiny_model, device="cpu")
    result = upscaler.upscale_array(image)
    assert result.dtype == dtype and result.shape == (20, 28, 3)
    expected = upscaler(torch.from_numpy(unit).permute(2, 0, 1)).permute(1, 2, 0).numpy()
    if peak is None:
        np.testing.assert_array_equal(result, expected)
    else:
        np.testing.assert_array_equal(result, np.rint(expected * peak).astype(dtype))


def test_upscale_array_rejects_non_rgb(tiny_model: VapSR) -> None:
    with pytest.raises(ValueError, match="H x W x 3"):
        Upscaler(model=tiny_model, device="cpu").upscale_array(np.zeros((8, 8), np.uint8))
