"""Issue #11 item 4: interlaced video is found, deinterlaced (bwdif) before upscaling, and said so."""

from __future__ import annotations

import itertools
import logging
import subprocess
from pathlib import Path

import numpy as np
import pytest
from video_helpers import FFMPEG, ffmpeg, frame_times, nearest_neighbour_vapsr, needs_ffmpeg, rgb_frames, streams

from vapsr_video.errors import UsageError
from vapsr_video.inference.upscaler import Upscaler
from vapsr_video.video.pipeline import upscale_video

pytestmark = needs_ffmpeg


# A white bar moving 4 pixels per field: woven fields show it twice, as a comb.
MOVING_BAR = "color=gray:s=64x48:r=50:d=0.4,format=gray,geq=lum='if(between(X-mod(T*200,56),0,7),235,60)'"


@pytest.fixture(scope="module")
def tff_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """25i H.264, top field first (as a broadcast or camcorder clip): 10 frames woven from 50p motion."""
    path = tmp_path_factory.mktemp("interlaced") / "tff.mp4"
    ffmpeg("-f", "lavfi", "-i", MOVING_BAR, "-f", "lavfi", "-i", "sine=d=0.4",
           "-vf", "tinterlace=interleave_top,setfield=tff", "-c:v", "libx264", "-flags", "+ildct+ilme",
           "-x264opts", "tff=1", "-pix_fmt", "yuv420p", "-c:a", "aac", path)
    assert streams(path)[0]["field_order"] == "tt"
    return path


@pytest.fixture(scope="module")
def upscaler() -> Upscaler:
    return Upscaler(model=nearest_neighbour_vapsr(2), device="cpu", precision="fp32")


def combing(frames: np.ndarray) -> float:
    """How much neighbouring rows differ beyond what rows two apart do: high for woven fields in motion."""
    near = np.abs(frames[:, 1:-1] - (frames[:, :-2] + frames[:, 2:]) / 2).mean()
    return float(near)


def test_interlaced_is_deinterlaced_at_the_frame_rate_by_default(tmp_path: Path, tff_clip: Path,
                                                                upscaler: Upscaler,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    target = tmp_path / "out.mkv"
    with caplog.at_level(logging.WARNING, logger="vapsr_video"):
        upscale_video(tff_clip, target, upscaler)
    assert "interlaced video (top field first): deinterlaced with bwdif at the frame rate" in caplog.text
    video = streams(target)[0]
    assert video["field_order"] == "progressive"
    assert frame_times(target) == frame_times(tff_clip)
    source, result = rgb_frames(tff_clip), rgb_frames(target, 64, 48)
    assert combing(result) < 0.6 * combing(source)


def test_field_rate_gives_one_frame_per_field(tmp_path: Path, tff_clip: Path, upscaler: Upscaler,
                                              caplog: pytest.LogCaptureFixture) -> None:
    target = tmp_path / "out.mkv"
    with caplog.at_level(logging.WARNING, logger="vapsr_video"):
        upscale_video(tff_clip, target, upscaler, deinterlace="field")
    assert "one frame per field (50 fps)" in caplog.text
    times = [float(t) for t in frame_times(target)]
    assert len(times) == 20 and times[0] == float(frame_times(tff_clip)[0])
    assert {round(b - a, 3) for a, b in itertools.pairwise(times)} == {0.02}
    assert streams(target)[0]["field_order"] == "progressive"


def test_progressive_video_is_left_alone(tmp_path: Path, upscaler: Upscaler,
                                         caplog: pytest.LogCaptureFixture) -> None:
    source = tmp_path / "progressive.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x48:r=25:d=0.2", "-c:v", "libx264", "-pix_fmt", "yuv420p", source)
    with caplog.at_level(logging.WARNING, logger="vapsr_video"):
        upscale_video(source, tmp_path / "out.mp4", upscaler, deinterlace="field")
    assert "interlaced" not in caplog.text
    assert frame_times(tmp_path / "out.mp4") == frame_times(source)


def test_an_unknown_mode_is_a_usage_error(tmp_path: Path, tff_clip: Path, upscaler: Upscaler) -> None:
    with pytest.raises(UsageError, match="--deinterlace 'weave'"):
        upscale_video(tff_clip, tmp_path / "out.mkv", upscaler, deinterlace="weave")
    assert not (tmp_path / "out.mkv").exists()


def fields_of(path: Path, width: int, height: int) -> np.ndarray:
    """Every field of the video, in display order, area-scaled to ``width`` x ``height``, as float RGB."""
    command = [FFMPEG or "ffmpeg", "-v", "error", "-i", str(path), "-vf",
               f"separatefields,scale={width}:{height}:flags=area", "-f", "rawvideo", "-pix_fmt", "rgb48le", "-"]
    raw = subprocess.run(command, capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype="<u2").reshape(-1, height, width, 3).astype(np.float32) / 65535.0


@pytest.mark.parametrize("order, tag", [("tff", "tt"), ("bff", "bb")])
def test_keep_upscales_each_field_and_weaves_them_back(tmp_path: Path, upscaler: Upscaler, order: str, tag: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    source = tmp_path / f"{order}.mkv"
    mode = "interleave_top" if order == "tff" else "interleave_bottom"
    ffmpeg("-f", "lavfi", "-i", MOVING_BAR, "-vf", f"tinterlace={mode},setfield={order}", "-c:v", "libx264",
           "-flags", "+ildct+ilme", "-x264opts", f"{order}=1", "-pix_fmt", "yuv420p", source)
    target = tmp_path / "out.mkv"
    with caplog.at_level(logging.WARNING, logger="vapsr_video"):
        upscale_video(source, target, upscaler, deinterlace="keep")
    assert "fields are woven back; written interlaced" in caplog.text
    video = streams(target)[0]
    assert (video["field_order"], video["width"], video["height"]) == (tag, 128, 96)
    assert frame_times(target) == frame_times(source)
    # Each output field is its input field, upscaled: nothing moved to the other field.
    difference = np.abs(fields_of(target, 64, 24) - fields_of(source, 64, 24))
    assert difference.mean() < 0.02
