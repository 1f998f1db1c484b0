"""``vapsr-video IN OUT`` as a user runs it: videos with encoder options, still images, usage errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
from video_helpers import FRAMES, frame_times, make_vfr_h264_aac_mp4, needs_ffmpeg, stream_md5, streams

from vapsr_video.errors import ExitCode

pytestmark = needs_ffmpeg


def test_video_with_encoder_options(tmp_path: Path, tiny_weights: Path, run_cli: Callable) -> None:
    source = make_vfr_h264_aac_mp4(tmp_path / "phone.mp4")
    target = tmp_path / "phone-x2.mkv"
    result = run_cli(source, target, "--weights", tiny_weights, "--codec", "libx265", "--crf", "30",
                     "--preset", "ultrafast", "--pix-fmt", "yuv420p10le", "--batch-size", "3",
                     "--encoder-option", "x265-params=log-level=error")
    assert result.returncode == 0, result.stderr
    assert f"{FRAMES} frames" in result.stdout and "fps" in result.stdout
    video = next(s for s in streams(target) if s["codec_type"] == "video")
    assert (video["codec_name"], video["pix_fmt"], video["width"], video["height"]) == ("hevc", "yuv420p10le",
                                                                                       128, 96)
    assert frame_times(target) == frame_times(source)
    assert stream_md5(target, "0:a:0") == stream_md5(source, "0:a:0")


def test_quiet_prints_nothing_and_usage_errors_exit_2(tmp_path: Path, tiny_weights: Path,
                                                       run_cli: Callable) -> None:
    source = make_vfr_h264_aac_mp4(tmp_path / "clip.mp4")
    refused = run_cli(source, tmp_path / "x.mkv", "--weights", tiny_weights, "--codec", "ffv1", "--crf", "3")
    assert refused.returncode == ExitCode.USAGE
    assert refused.stderr.strip().count("\n") == 0 and "--crf does not apply to ffv1" in refused.stderr
    assert not (tmp_path / "x.mkv").exists()
    quiet = run_cli(source, tmp_path / "q.mp4", "--weights", tiny_weights, "--quiet")
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""
    assert len(frame_times(tmp_path / "q.mp4")) == FRAMES


def test_still_images_still_work(tmp_path: Path, tiny_weights: Path, run_cli: Callable) -> None:
    image = tmp_path / "photo.png"
    frame = av.VideoFrame.from_ndarray(np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8),
                                       format="rgb24")
    frame.save(str(image))
    result = run_cli(image, tmp_path / "photo-x2.png", "--weights", tiny_weights)
    assert result.returncode == 0, result.stderr
    with av.open(str(tmp_path / "photo-x2.png")) as container:
        upscaled = next(container.decode(video=0))
    assert (upscaled.width, upscaled.height) == (80, 48)
