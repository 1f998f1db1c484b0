"""YUV <-> RGB on the device against FFmpeg's swscale (an independent implementation), and round trips."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from video_helpers import FFMPEG, FRAMES, make_odd_444, needs_ffmpeg, rgb_frames

from vapsr_video.inference.upscaler import Upscaler
from vapsr_video.video.colour import (
    ColourSpec,
    plane_layout,
    rgb_to_yuv,
    samples_to_tensor,
    tensor_to_samples,
    yuv_to_rgb,
)
from vapsr_video.video.encoder import EncodeOptions
from vapsr_video.video.pipeline import upscale_video

MATRICES = {"bt601": 6, "bt709": 1, "bt2020": 9}


def smooth_planes(layout, seed: int = 0) -> np.ndarray:
    """Valid, smoothly varying sample values for every plane of ``layout`` (flat buffer)."""
    rng = np.random.default_rng(seed)
    parts = []
    low, high = (16, 235) if layout.family == "yuv" else (0, 255)
    scale = 1 << (layout.bit_depth - 8)
    for rows, columns in layout.plane_shapes:
        y, x = np.mgrid[0:rows, 0:columns]
        phase = rng.uniform(0, 6.28, 2)
        wave = 0.5 + 0.4 * np.sin(x / 5.0 + phase[0]) * np.cos(y / 7.0 + phase[1])
        parts.append(np.rint((low + wave * (high - low)) * scale).astype(layout.numpy_dtype).ravel())
    return np.concatenate(parts)


@needs_ffmpeg
@pytest.mark.parametrize("matrix", list(MATRICES))
@pytest.mark.parametrize("full_range", [False, True])
def test_yuv_to_rgb_matches_swscale(tmp_path: Path, matrix: str, full_range: bool) -> None:
    layout = plane_layout("yuv444p", 40, 24)
    planes = smooth_planes(layout)
    raw = tmp_path / "frame.yuv"
    raw.write_bytes(planes.tobytes())
    colour_range = "full" if full_range else "limited"
    result = subprocess.run(
        [FFMPEG, "-v", "error", "-f", "rawvideo", "-pix_fmt", "yuv444p", "-s", "40x24", "-i", str(raw),
         "-vf", f"scale=in_color_matrix={matrix}:in_range={colour_range}:flags=accurate_rnd+full_chroma_int",
         "-f", "rawvideo", "-pix_fmt", "rgb48le", "-"], capture_output=True, check=True)
    reference = np.frombuffer(result.stdout, dtype="<u2").reshape(24, 40, 3).astype(np.float32) / 65535
    spec = ColourSpec(matrix=MATRICES[matrix], full_range=full_range)
    ours = yuv_to_rgb(samples_to_tensor(planes[None]), layout, spec)[0].clamp(0, 1).permute(1, 2, 0).numpy()
    assert np.abs(ours - reference).max() < 1.5 / 255


@pytest.mark.parametrize("pix_fmt, size", [
    ("yuv444p", (37, 21)), ("yuv444p10le", (32, 24)), ("gbrp", (33, 17)), ("gbrp10le", (16, 8)), ("gray", (20, 10)),
    ("yuv444p16le", (12, 6)), ("gray16le", (8, 4)),  # full 16-bit codes, above int16's range
])
def test_full_chroma_round_trip_is_lossless(pix_fmt: str, size: tuple[int, int]) -> None:
    layout = plane_layout(pix_fmt, *size)
    planes = smooth_planes(layout, seed=3)
    spec = ColourSpec(matrix=1, full_range=pix_fmt.startswith("gbrp"))
    if layout.family == "gray":  # grey: only luma exists, any chroma is regenerated
        planes = planes[: layout.plane_sizes[0]]
    back = tensor_to_samples(rgb_to_yuv(yuv_to_rgb(samples_to_tensor(planes[None]), layout, spec), layout, spec))[0]
    assert np.abs(back.astype(np.int64) - planes.astype(np.int64)).max() <= 1


@pytest.mark.parametrize("pix_fmt, size, location", [
    ("yuv420p", (63, 47), 1), ("yuv420p10le", (64, 48), 3), ("yuv422p", (35, 20), 2), ("yuv420p", (16, 16), 2),
])
def test_subsampled_round_trip_keeps_smooth_colour(pix_fmt: str, size: tuple[int, int], location: int) -> None:
    layout = plane_layout(pix_fmt, *size)
    planes = smooth_planes(layout, seed=5)
    spec = ColourSpec(matrix=9, full_range=False, chroma_location=location)
    back = tensor_to_samples(rgb_to_yuv(yuv_to_rgb(samples_to_tensor(planes[None]), layout, spec), layout, spec))[0]
    difference = np.abs(back.astype(np.int64) - planes.astype(np.int64))
    luma = layout.plane_sizes[0]
    step = 1 << (layout.bit_depth - 8)
    assert difference[:luma].max() <= step  # luma untouched up to rounding
    assert difference[luma:].mean() < 1.0 * step  # chroma: only the resampling's slight smoothing


def test_limited_range_black_and_white_land_on_the_nominal_codes() -> None:
    layout = plane_layout("yuv420p10le", 8, 8)
    spec = ColourSpec(matrix=1, full_range=False)
    rgb = torch.cat([torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8)])
    planes = tensor_to_samples(rgb_to_yuv(rgb, layout, spec)).astype(np.int64)
    luma, chroma = planes[:, :64], planes[:, 64:]
    assert (luma[0] == 64).all() and (luma[1] == 940).all()
    assert (chroma == 512).all()


@needs_ffmpeg
def test_pipeline_output_equals_the_upscaler_run_frame_by_frame(tmp_path: Path, tiny_model) -> None:
    """Input and output are converted to RGB by FFmpeg (not by our code); the output is 16-bit
    lossless FFV1, so what remains is only the pipeline's own arithmetic."""
    source = make_odd_444(tmp_path / "input.mkv")
    upscaler = Upscaler(model=tiny_model, device="cpu", precision="fp32")
    target = tmp_path / "output.mkv"
    upscale_video(source, target, upscaler, EncodeOptions(codec="ffv1", pix_fmt="yuv444p16le"), batch_size=3)
    frames = rgb_frames(source)
    expected = np.stack([
        upscaler(torch.from_numpy(frame).permute(2, 0, 1)).permute(1, 2, 0).numpy() for frame in frames])
    produced = rgb_frames(target)
    assert produced.shape == expected.shape == (FRAMES, 94, 126, 3)
    difference = np.abs(produced - expected)
    assert difference.mean() < 0.3 / 255
    assert difference.max() < 3 / 255
