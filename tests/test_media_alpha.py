"""Issue #11 item 3: an alpha channel is upscaled with the picture and written where the codec can hold it."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import numpy as np
import pytest
from video_helpers import FFMPEG, ffmpeg, nearest_neighbour_vapsr, needs_ffmpeg, streams

from vapsr_video.inference.upscaler import Upscaler
from vapsr_video.video.encoder import EncodeOptions
from vapsr_video.video.pipeline import upscale_video

pytestmark = needs_ffmpeg

# A left-to-right alpha ramp over a moving test picture, 64x48, 5 frames.
RAMP = "testsrc=s=64x48:r=25:d=0.2,format=yuva420p,geq=lum='p(X,Y)':cb='p(X,Y)':cr='p(X,Y)':a='X*4'"


def alpha_of(path: Path) -> np.ndarray:
    """The alpha plane of every frame at 64x48 (2x2 means of an upscaled one), as FFmpeg decodes it
    (libvpx-vp9 for VP9: FFmpeg's own VP9 decoder ignores alpha). Averaged here rather than by swscale,
    which would also stretch a plane tagged limited range."""
    video = streams(path)[0]
    width, height = video["width"], video["height"]
    vp9 = video["codec_name"] == "vp9"
    command = [FFMPEG or "ffmpeg", "-v", "error", *(["-c:v", "libvpx-vp9"] if vp9 else []), "-i", str(path),
               "-vf", "alphaextract", "-f", "rawvideo", "-pix_fmt", "gray", "-"]
    raw = subprocess.run(command, capture_output=True, check=True).stdout
    planes = np.frombuffer(raw, np.uint8).reshape(-1, height, width).astype(np.float32)
    factor = width // 64
    return planes.reshape(-1, 48, factor, 64, factor).mean(axis=(2, 4))


@pytest.fixture(scope="module")
def upscaler() -> Upscaler:
    return Upscaler(model=nearest_neighbour_vapsr(2), device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def vp9_alpha(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("alpha") / "alpha.webm"
    ffmpeg("-f", "lavfi", "-i", RAMP, "-c:v", "libvpx-vp9", path)
    return path


@pytest.fixture(scope="module")
def ffv1_alpha(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("alpha") / "alpha.mkv"
    ffmpeg("-f", "lavfi", "-i", RAMP, "-c:v", "ffv1", path)
    return path


def test_vp9_alpha_is_kept_in_webm(tmp_path: Path, vp9_alpha: Path, upscaler: Upscaler) -> None:
    target = tmp_path / "out.webm"
    upscale_video(vp9_alpha, target, upscaler)
    (video,) = streams(target)
    assert (video["codec_name"], video["width"], video["height"]) == ("vp9", 128, 96)
    assert video["tags"].get("ALPHA_MODE", video["tags"].get("alpha_mode")) == "1"
    assert np.abs(alpha_of(target) - alpha_of(vp9_alpha)).max() <= 6  # bicubic + VP9 losses only


@pytest.mark.parametrize("suffix, options, pix_fmt", [
    (".mkv", EncodeOptions(), "yuva420p"),  # FFV1 -> FFV1
    (".mov", EncodeOptions(codec="prores_ks"), "yuva444p"),  # ProRes 4444 (FFmpeg decodes it as 12-bit)
    (".mov", EncodeOptions(codec="png"), "rgba"),  # PNG in QuickTime: a packed format, converted
])
def test_alpha_is_kept_where_the_codec_holds_it(tmp_path: Path, ffv1_alpha: Path, upscaler: Upscaler,
                                                suffix: str, options: EncodeOptions, pix_fmt: str) -> None:
    target = tmp_path / f"out{suffix}"
    upscale_video(ffv1_alpha, target, upscaler, options)
    assert streams(target)[0]["pix_fmt"].startswith(pix_fmt)
    assert np.abs(alpha_of(target) - alpha_of(ffv1_alpha)).max() <= 2


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_alpha_that_cannot_be_kept_is_announced_once_and_not_tagged(tmp_path: Path, vp9_alpha: Path,
                                                                    upscaler: Upscaler, suffix: str,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    target = tmp_path / f"out{suffix}"
    options = EncodeOptions(codec="libx264") if suffix == ".mkv" else EncodeOptions()
    with caplog.at_level(logging.WARNING, logger="vapsr_video"):
        upscale_video(vp9_alpha, target, upscaler, options)
    assert caplog.text.count("alpha channel (transparency) is dropped") == 1
    (video,) = streams(target)
    assert "alpha_mode" not in {key.lower() for key in video.get("tags", {})}
    assert not video["pix_fmt"].startswith("yuva")
