"""The streaming upscaler on the kinds of files users bring, checked with Debian's ffmpeg/ffprobe.

Each clip is made by ffmpeg's lavfi sources (12 frames of 64x48); the upscaler
is a VapSR whose weights make it pixel replication, so "each output frame scaled
back down resembles its input frame" is a strict check of colour handling.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from video_helpers import (
    FRAMES,
    chapters,
    ffmpeg,
    format_info,
    frame_side_data,
    frame_times,
    make_full_range_709,
    make_hevc_10bit_pq,
    make_mkv_with_extras,
    make_odd_444,
    make_prores_pcm_mov,
    make_rotated_phone_clip,
    make_vfr_h264_aac_mp4,
    nearest_neighbour_vapsr,
    needs_ffmpeg,
    rgb_frames,
    stream_md5,
    streams,
    video_source,
)

from vapsr_video.inference.upscaler import Upscaler
from vapsr_video.video.encoder import EncodeOptions
from vapsr_video.video.pipeline import VideoResult, upscale_video
from vapsr_video.video.probe import probe_video

pytestmark = needs_ffmpeg

CLIPS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "vfr_h264_aac": (make_vfr_h264_aac_mp4, ".mp4"),
    "mkv_extras": (make_mkv_with_extras, ".mkv"),
    "hevc_10bit_pq": (make_hevc_10bit_pq, ".mkv"),
    "odd_444": (make_odd_444, ".mkv"),
    "full_range_709": (make_full_range_709, ".mp4"),
    "rotated_phone": (make_rotated_phone_clip, ".mp4"),
    "prores_pcm": (make_prores_pcm_mov, ".mov"),
}


@pytest.fixture(scope="module")
def nearest_upscaler() -> Upscaler:
    return Upscaler(model=nearest_neighbour_vapsr(2), device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def upscaled(tmp_path_factory: pytest.TempPathFactory, nearest_upscaler: Upscaler) -> Callable[[str], tuple]:
    """``upscaled(name) -> (input, output, result)``, each clip made and upscaled once per module."""
    done: dict[str, tuple[Path, Path, VideoResult]] = {}

    def get(name: str) -> tuple[Path, Path, VideoResult]:
        if name not in done:
            make, suffix = CLIPS[name]
            folder = tmp_path_factory.mktemp(name)
            source = make(folder / f"input{suffix}")
            target = folder / f"output{suffix}"
            done[name] = (source, target, upscale_video(source, target, nearest_upscaler))
        return done[name]

    return get


def video_stream(path: Path) -> dict:
    return next(s for s in streams(path) if s["codec_type"] == "video")


@pytest.mark.parametrize("name", list(CLIPS))
def test_frames_size_and_timestamps_are_kept(upscaled: Callable, name: str) -> None:
    source, target, result = upscaled(name)
    before, after = video_stream(source), video_stream(target)
    assert (after["width"], after["height"]) == (2 * before["width"], 2 * before["height"])
    times_in, times_out = frame_times(source), frame_times(target)
    assert len(times_in) == FRAMES
    assert times_out == times_in  # same count, and each frame at its own time (VFR, non-zero start)
    assert result.frames == FRAMES
    assert result.output_bytes == target.stat().st_size
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".vapsr-partial-")]


@pytest.mark.parametrize("name", list(CLIPS))
def test_each_output_frame_scaled_down_matches_its_input_frame(upscaled: Callable, name: str) -> None:
    source, target, _ = upscaled(name)
    original = rgb_frames(source)
    height, width = original.shape[1:3]
    reduced = rgb_frames(target, width, height)
    assert reduced.shape == original.shape
    error = np.abs(reduced - original).mean(axis=(1, 2, 3))
    # Codec and chroma-resampling losses are ~0.005 here (growing along a GOP at these tiny sizes);
    # BT.601 read as BT.709 costs ~0.021 on every frame, limited range read as full ~0.033, a frame
    # off by one ~0.018. The median keeps one badly coded frame from deciding.
    assert np.median(error) < 0.010 and error.max() < 0.014, f"mean error per frame {np.round(error, 4)}"


@pytest.mark.parametrize("name", list(CLIPS))
def test_colour_tags_bit_depth_and_codec_follow_the_input(upscaled: Callable, name: str) -> None:
    source, target, _ = upscaled(name)
    before, after = video_stream(source), video_stream(target)
    assert after["codec_name"] == before["codec_name"]
    assert after["pix_fmt"] == before["pix_fmt"]
    for tag in ("color_primaries", "color_transfer", "color_range"):
        if before.get(tag, "unknown") != "unknown":
            assert after.get(tag) == before[tag], tag
    if before.get("color_space", "unknown") != "unknown":
        assert after.get("color_space") == before["color_space"]
    else:  # untagged SD input: tagged with the BT.601 matrix the conversion used
        assert after.get("color_space") == "smpte170m"


def test_hdr_stays_10_bit_bt2020_pq(upscaled: Callable) -> None:
    _, target, _ = upscaled("hevc_10bit_pq")
    after = video_stream(target)
    assert after["pix_fmt"] == "yuv420p10le"
    assert (after["color_primaries"], after["color_transfer"], after["color_space"]) == (
        "bt2020", "smpte2084", "bt2020nc")


@pytest.mark.parametrize("name", ["vfr_h264_aac", "mkv_extras", "rotated_phone", "prores_pcm"])
def test_audio_is_copied_bit_for_bit(upscaled: Callable, name: str) -> None:
    source, target, _ = upscaled(name)
    audio_in = [s for s in streams(source) if s["codec_type"] == "audio"]
    audio_out = [s for s in streams(target) if s["codec_type"] == "audio"]
    assert [s["codec_name"] for s in audio_out] == [s["codec_name"] for s in audio_in]
    for index in range(len(audio_in)):
        assert stream_md5(target, f"0:a:{index}") == stream_md5(source, f"0:a:{index}")


def test_mkv_keeps_tracks_languages_subtitles_chapters_title_and_attachments(upscaled: Callable) -> None:
    source, target, result = upscaled("mkv_extras")
    assert result.dropped_streams == []
    kinds = [s["codec_type"] for s in streams(target)]
    assert kinds == [s["codec_type"] for s in streams(source)]
    assert kinds.count("audio") == 2 and kinds.count("subtitle") == 1 and kinds.count("attachment") == 1
    languages = [s.get("tags", {}).get("language") for s in streams(target) if s["codec_type"] != "video"]
    assert languages[:3] == ["eng", "fre", "eng"]
    subtitle = next(s for s in streams(target) if s["codec_type"] == "subtitle")
    assert subtitle["tags"]["title"] == "English subtitles"
    assert stream_md5(target, "0:s:0") == stream_md5(source, "0:s:0")
    attachment = next(s for s in streams(target) if s["codec_type"] == "attachment")
    assert attachment["tags"]["filename"] == "font.ttf"
    assert attachment["tags"]["mimetype"] == "application/x-truetype-font"
    assert [(c["start_time"], c["end_time"], c["tags"]["title"]) for c in chapters(target)] == [
        (c["start_time"], c["end_time"], c["tags"]["title"]) for c in chapters(source)]
    assert len(chapters(target)) == 2
    assert format_info(target)["tags"]["title"] == "A tiny film"


def test_rotation_is_kept(upscaled: Callable) -> None:
    source, target, _ = upscaled("rotated_phone")
    rotation_in = [d.get("rotation") for d in frame_side_data(source) if d["side_data_type"] == "Display Matrix"]
    rotation_out = [d.get("rotation") for d in frame_side_data(target) if d["side_data_type"] == "Display Matrix"]
    assert rotation_in and rotation_out == rotation_in


def test_timecode_is_kept(upscaled: Callable) -> None:
    _, target, result = upscaled("prores_pcm")
    assert result.dropped_streams == []
    timecodes = {s.get("tags", {}).get("timecode") for s in streams(target)}
    assert "01:02:03:04" in timecodes


def test_sample_aspect_ratio_is_kept(upscaled: Callable) -> None:
    source, target, _ = upscaled("full_range_709")
    assert video_stream(source)["sample_aspect_ratio"] == "4:3"
    assert video_stream(target)["sample_aspect_ratio"] == "4:3"


def test_subtitles_an_mp4_cannot_hold_are_named_in_a_warning(
        tmp_path: Path, nearest_upscaler: Upscaler, caplog: pytest.LogCaptureFixture) -> None:
    source = make_mkv_with_extras(tmp_path / "input.mkv")
    with caplog.at_level("WARNING"):
        result = upscale_video(source, tmp_path / "output.mp4", nearest_upscaler)
    assert len(result.dropped_streams) == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("#3" in w and "subtitle" in w and "English subtitles" in w for w in warnings)
    assert any("#4" in w and "font.ttf" in w for w in warnings)
    kinds = [s["codec_type"] for s in streams(tmp_path / "output.mp4")]
    assert kinds[:3] == ["video", "audio", "audio"]  # (then MP4's own chapter track)
    assert len(chapters(tmp_path / "output.mp4")) == 2
    assert stream_md5(tmp_path / "output.mp4", "0:a:1") == stream_md5(source, "0:a:1")


def test_probe_reports_the_frame_count(upscaled: Callable) -> None:
    source, _, _ = upscaled("vfr_h264_aac")
    info = probe_video(source)
    assert (info.frames, info.frames_exact, info.width, info.height, info.is_image) == (FRAMES, True, 64, 48, False)
    mkv_info = probe_video(upscaled("mkv_extras")[0])
    assert abs(mkv_info.frames - FRAMES) <= 1 and not mkv_info.frames_exact  # estimated from the duration


def test_time_range_keeps_only_those_frames_at_their_own_times(tmp_path: Path, upscaled: Callable,
                                                               nearest_upscaler: Upscaler) -> None:
    source, _, _ = upscaled("vfr_h264_aac")
    times = [float(t) for t in frame_times(source)]
    start, end = times[4], times[9]
    target = tmp_path / "segment.mkv"
    result = upscale_video(source, target, nearest_upscaler, EncodeOptions(codec="ffv1"),
                           time_range=(start, end), copy_streams=False)
    assert result.frames == 5
    assert [s["codec_type"] for s in streams(target)] == ["video"]
    assert [round(float(t), 3) for t in frame_times(target)] == [round(t, 3) for t in times[4:9]]


def test_progress_counts_every_frame_and_batches_do_not_change_the_result(
        tmp_path: Path, upscaled: Callable, tiny_model) -> None:
    source, _, _ = upscaled("odd_444")
    upscaler = Upscaler(model=tiny_model, device="cpu")
    counted: list[int] = []
    one = upscale_video(source, tmp_path / "one.mkv", upscaler, EncodeOptions(codec="ffv1"), batch_size=1,
                        progress=counted.append)
    assert sum(counted) == one.frames == FRAMES
    upscale_video(source, tmp_path / "five.mkv", upscaler, EncodeOptions(codec="ffv1"), batch_size=5)
    # Batches of 1 and 5 may differ in the last bit of a float (the CPU convolution picks its algorithm
    # by batch size), so a code value or two here and there; a misplaced frame would differ a lot.
    difference = np.abs(rgb_frames(tmp_path / "one.mkv") - rgb_frames(tmp_path / "five.mkv"))
    assert difference.max() <= 3 / 255 and difference.mean() < 0.02 / 255


@pytest.mark.parametrize("codec, pix_fmt, suffix", [
    ("ffv1", "bgr0", ".mkv"),  # packed RGB: converted once to planar gbrp on the CPU
    ("libx264", "gray", ".mkv"),
    ("ffv1", "yuva420p", ".mkv"),  # alpha: kept beside the picture (tests/test_media_alpha.py)
])
def test_other_pixel_formats(tmp_path: Path, nearest_upscaler: Upscaler, codec: str, pix_fmt: str,
                             suffix: str) -> None:
    source = tmp_path / f"input{suffix}"
    ffmpeg(*video_source(), "-vf", f"trim=end_frame={FRAMES}", "-c:v", codec, "-pix_fmt", pix_fmt, source)
    target = tmp_path / f"output{suffix}"
    result = upscale_video(source, target, nearest_upscaler)
    assert result.frames == FRAMES and len(frame_times(target)) == FRAMES
    original = rgb_frames(source)
    reduced = rgb_frames(target, original.shape[2], original.shape[1])
    assert np.abs(reduced - original).mean() < 0.010
