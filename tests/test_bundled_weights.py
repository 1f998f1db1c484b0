"""The weights the package ships: present, what they say they are, and trained."""

from __future__ import annotations

from pathlib import Path

import pytest

from vapsr_video import Upscaler
from vapsr_video.evaluation.evaluate import evaluate_bicubic, evaluate_upscaler
from vapsr_video.model.weights import bundled_weights_path, infer_config, load_model, read_state_dict

BUNDLED = [("vapsr", 2), ("vapsr", 3), ("vapsr", 4), ("vapsr-s", 4)]
# Untrained or mismatched weights land far below bicubic; the CPU-trained models of
# this release add 1.61-2.86 dB (README). The 1.5 dB target is met by all four;
# raise this bound when the GPU-trained weights arrive.
MIN_GAIN_DB = 0.5


@pytest.mark.parametrize(("variant", "scale"), BUNDLED)
def test_bundled_weights_match_their_declared_variant_and_scale(variant: str, scale: int) -> None:
    path = bundled_weights_path(variant, scale)
    assert path.stat().st_size < 2 * 1024 * 1024
    tensors, metadata = read_state_dict(path)
    config = infer_config(tensors, str(path))
    assert (config.variant, config.scale) == (variant, scale)
    assert (metadata["variant"], metadata["scale"]) == (variant, str(scale))
    for key in ("training_data", "iterations", "recipe", "set5_psnr"):
        assert metadata.get(key), f"{path.name} metadata lacks {key}"
    assert "Set5" not in metadata["training_data"], "trained on a benchmark set"
    model = load_model(variant=variant, scale=scale)  # the default a user gets with no --weights
    assert model.config == config


@pytest.mark.slow
@pytest.mark.parametrize(("variant", "scale"), BUNDLED)
def test_bundled_weights_beat_bicubic_on_set5(variant: str, scale: int, benchmarks_dir: Path) -> None:
    upscaler = Upscaler(variant=variant, scale=scale, device="cpu")
    (model,) = evaluate_upscaler(upscaler, ["Set5"], label=variant, data_dir=benchmarks_dir)
    (bicubic,) = evaluate_bicubic(scale, ["Set5"], data_dir=benchmarks_dir)
    assert model.psnr >= bicubic.psnr + MIN_GAIN_DB, (
        f"{variant} x{scale}: {model.psnr:.2f} dB vs bicubic {bicubic.psnr:.2f} dB on Set5"
    )
    assert model.ssim > bicubic.ssim
