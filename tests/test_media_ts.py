"""Issue #11 item 2: MPEG transport streams (.ts, .m2ts, .mts) in and out."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
from video_helpers import ffmpeg, ffprobe_json, frame_times, needs_ffmpeg, stream_md5, streams

from vapsr_video.batch.discovery import output_path_for
from vapsr_video.errors import ExitCode, UsageError
from vapsr_video.inference.upscaler import Upscaler
from vapsr_video.model.vapsr import VapSR
from vapsr_video.model.weights import save_weights
from vapsr_video.video.encoder import EncodeOptions
from vapsr_video.video.pipeline import upscale_video

pytestmark = needs_ffmpeg

# 2^33 ticks of the 90 kHz clock: MPEG-TS timestamps wrap to zero after this many seconds (about 26.5 h).
WRAP_SECONDS = 2**33 / 90000
MUXDELAY = 1.4  # ffmpeg's default delay before the first timestamp of a transport stream


def make_ts(path: Path, codec: str = "libx264", *, seconds: float = 0.4, extra: tuple[str, ...] = ()) -> Path:
    """H.264 (or ``codec``) + AAC in a transport stream, the video on PID 0x150 and the audio on 0x151."""
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x48:r=25", "-f", "lavfi", "-i", "sine", "-t", str(seconds),
           "-c:v", codec, "-pix_fmt", "yuv420p", "-c:a", "aac", "-streamid", "0:0x150", "-streamid", "1:0x151",
           *extra, path)
    return path


@pytest.fixture
def upscaler(tiny_model: VapSR) -> Upscaler:
    return Upscaler(model=tiny_model, device="cpu")


@pytest.mark.parametrize("suffix", [".ts", ".m2ts", ".mts"])
def test_h264_transport_stream_stays_one(tmp_path: Path, upscaler: Upscaler, suffix: str) -> None:
    source = make_ts(tmp_path / f"in{suffix}")
    target = tmp_path / f"out{suffix}"
    result = upscale_video(source, target, upscaler)
    assert result.dropped_streams == []
    assert ffprobe_json(target, "-show_format")["format"]["format_name"] == "mpegts"
    video, audio = streams(target)
    assert (video["codec_name"], video["pix_fmt"], video["width"], video["height"]) == ("h264", "yuv420p", 128, 96)
    assert (video["id"], audio["id"]) == ("0x150", "0x151")  # PIDs kept
    assert audio["codec_name"] == "aac" and stream_md5(target, "0:a") == stream_md5(source, "0:a")
    assert frame_times(target) == frame_times(source)


def test_hevc_and_an_explicit_codec_in_a_transport_stream(tmp_path: Path, upscaler: Upscaler) -> None:
    source = make_ts(tmp_path / "hevc.ts", "libx265", extra=("-x265-params", "log-level=error"))
    upscale_video(source, tmp_path / "hevc-x2.ts", upscaler)
    assert streams(tmp_path / "hevc-x2.ts")[0]["codec_name"] == "hevc"
    upscale_video(source, tmp_path / "h264-x2.ts", upscaler, EncodeOptions(codec="libx264"))
    assert streams(tmp_path / "h264-x2.ts")[0]["codec_name"] == "h264"


def test_mpeg2_broadcast_clip_is_written_as_h264(tmp_path: Path, upscaler: Upscaler) -> None:
    source = make_ts(tmp_path / "mpeg2.ts", "mpeg2video")
    upscale_video(source, tmp_path / "out.ts", upscaler)
    assert [s["codec_name"] for s in streams(tmp_path / "out.ts")] == ["h264", "aac"]


def test_a_codec_a_transport_stream_cannot_hold_is_refused_naming_the_file(tmp_path: Path,
                                                                           upscaler: Upscaler) -> None:
    source = make_ts(tmp_path / "in.ts")
    target = tmp_path / "out.ts"
    with pytest.raises(UsageError, match=r"out\.ts: a mpegts file cannot hold ffv1 video"):
        upscale_video(source, target, upscaler, EncodeOptions(codec="ffv1"))
    assert not target.exists()


def test_timestamps_run_on_across_the_33_bit_wrap(tmp_path: Path, upscaler: Upscaler) -> None:
    # The first frame is 0.4 s before the 90 kHz clock wraps to zero; the clip is 0.8 s long.
    offset = WRAP_SECONDS - 0.4 - MUXDELAY
    source = make_ts(tmp_path / "wrap.ts", seconds=0.8, extra=("-output_ts_offset", f"{offset:.3f}"))
    target = tmp_path / "out.ts"
    upscale_video(source, target, upscaler)
    times = [float(t) for t in frame_times(target)]
    assert len(times) == 20
    steps = {round(b - a, 3) for a, b in itertools.pairwise(times)}
    assert steps == {0.04}  # no jump back by 26.5 hours, no gap

    def av_offset(path: Path) -> float:
        video, audio = streams(path)
        return float(video["start_time"]) - float(audio["start_time"])

    assert av_offset(target) == pytest.approx(av_offset(source), abs=0.002)  # audio stays in sync


def test_batch_keeps_the_transport_stream_extension(tmp_path: Path) -> None:
    for name in ("clip.ts", "clip.m2ts", "clip.MTS"):
        assert output_path_for(name, tmp_path) == tmp_path / name


def test_cli_transport_stream_to_transport_stream(tmp_path: Path, tiny_model_factory: Callable,
                                                  run_cli: Callable) -> None:
    source = make_ts(tmp_path / "in.ts")
    weights = tmp_path / "tiny.safetensors"
    save_weights(tiny_model_factory(scale=2), weights)
    result = run_cli(source, tmp_path / "out.ts", "--weights", weights)
    assert result.returncode == 0, result.stderr
    refused = run_cli(source, tmp_path / "bad.ts", "--weights", weights, "--codec", "prores_ks")
    assert refused.returncode == ExitCode.USAGE
    assert "bad.ts: a mpegts file cannot hold prores_ks video" in refused.stderr


def test_program_number_and_service_are_kept(tmp_path: Path, upscaler: Upscaler) -> None:
    source = make_ts(tmp_path / "service.ts", extra=(
        "-metadata", "service_name=Channel Four", "-metadata", "service_provider=Broadcaster",
        "-mpegts_service_id", "7", "-mpegts_pmt_start_pid", "0x200", "-mpegts_transport_stream_id", "5"))
    target = tmp_path / "out.ts"
    upscale_video(source, target, upscaler)

    def program(path: Path) -> tuple:
        (found,) = ffprobe_json(path, "-show_programs")["programs"]
        return (found["program_id"], found["pmt_pid"], found["tags"]["service_name"],
                found["tags"]["service_provider"], sorted(s["id"] for s in found["streams"]))

    assert program(target) == program(source) == (7, 0x200, "Channel Four", "Broadcaster", ["0x150", "0x151"])
