"""Issue #11 item 6: ``-`` as input and output, so that vapsr-video sits between two ffmpeg commands."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from video_helpers import FFMPEG, default_sigint, ffprobe_json, frame_times, needs_ffmpeg, stream_md5, streams

from vapsr_video.errors import ExitCode

pytestmark = needs_ffmpeg

SOURCE = ["-f", "lavfi", "-i", "testsrc=s=64x48:r=25:d=0.4", "-f", "lavfi", "-i", "sine=d=0.4",
          "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"]


def vapsr(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "vapsr_video", *map(str, args)]


def test_ffmpeg_to_vapsr_to_ffmpeg(tmp_path: Path, tiny_weights: Path) -> None:
    target = tmp_path / "piped.mkv"
    produce = subprocess.Popen([FFMPEG or "ffmpeg", "-v", "error", *SOURCE, "-f", "nut", "-"], stdout=subprocess.PIPE)
    upscale = subprocess.Popen(vapsr("-", "-", "--format", "nut", "--weights", tiny_weights), stdin=produce.stdout,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert produce.stdout is not None
    produce.stdout.close()  # so that the upscaler sees the end of the stream
    consume = subprocess.run([FFMPEG or "ffmpeg", "-v", "error", "-y", "-i", "-", "-c", "copy", str(target)],
                             stdin=upscale.stdout, capture_output=True, text=True)
    _, errors = upscale.communicate()
    assert produce.wait() == 0 and upscale.returncode == 0, errors.decode()
    assert consume.returncode == 0, consume.stderr
    assert "10 frames" in errors.decode() and "streamed" in errors.decode()  # the summary is on stderr
    video, audio = streams(target)
    assert (video["codec_name"], video["width"], video["height"], audio["codec_name"]) == ("h264", 128, 96, "aac")
    assert len(frame_times(target)) == 10


@pytest.mark.parametrize("format_name, muxer", [("mkv", "matroska,webm"), ("mpegts", "mpegts")])
def test_file_to_standard_output(tmp_path: Path, tiny_weights: Path, format_name: str, muxer: str) -> None:
    source = tmp_path / "in.mp4"
    subprocess.run([FFMPEG or "ffmpeg", "-v", "error", *SOURCE, str(source)], check=True)
    result = subprocess.run(vapsr(source, "-", "--format", format_name, "--weights", tiny_weights, "--quiet"),
                            capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
    received = tmp_path / f"received.{format_name}"
    received.write_bytes(result.stdout)  # stdout carried the stream and nothing else
    assert ffprobe_json(received, "-show_format")["format"]["format_name"] == muxer
    assert len(frame_times(received)) == 10
    if format_name == "mkv":  # (MPEG-TS gives AAC its ADTS headers: same audio, other packet bytes)
        assert stream_md5(received, "0:a") == stream_md5(source, "0:a")
    assert [s["codec_name"] for s in streams(received)] == ["h264", "aac"]


def test_standard_output_needs_a_streamable_format(tmp_path: Path, tiny_weights: Path,
                                                   run_cli: Callable) -> None:
    source = tmp_path / "in.mp4"
    subprocess.run([FFMPEG or "ffmpeg", "-v", "error", *SOURCE, str(source)], check=True)
    missing = run_cli(source, "-", "--weights", tiny_weights)
    assert missing.returncode == ExitCode.USAGE and missing.stdout == ""
    assert missing.stderr.count("\n") == 1 and "needs --format (mkv|nut|mpegts)" in missing.stderr
    unstreamable = run_cli(source, "-", "--format", "mp4", "--weights", tiny_weights)
    assert unstreamable.returncode == ExitCode.USAGE and unstreamable.stdout == ""


def test_garbage_on_standard_input_is_refused(tiny_weights: Path) -> None:
    result = subprocess.run(vapsr("-", "-", "--format", "nut", "--weights", tiny_weights),
                            input=b"this is not a video\n" * 200, capture_output=True)
    assert result.returncode == ExitCode.BAD_INPUT and result.stdout == b""
    message = result.stderr.decode().strip()
    assert "\n" not in message and "standard input: not a media stream" in message


def test_a_failure_cuts_the_stream_and_exits_non_zero(tmp_path: Path, tiny_weights: Path) -> None:
    # Policy: standard output streams as it goes; a failure (here Ctrl-C) cuts it where it stands.
    source = tmp_path / "long.mkv"
    subprocess.run([FFMPEG or "ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=s=64x48:r=25",
                    "-frames:v", "3000", "-c:v", "libx264", "-preset", "ultrafast", str(source)], check=True)
    process = subprocess.Popen(vapsr(source, "-", "--format", "nut", "--weights", tiny_weights, "--quiet"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_sigint)
    assert process.stdout is not None
    received = process.stdout.read(4096)  # the stream has started
    assert received
    process.send_signal(signal.SIGINT)
    rest, errors = process.communicate(timeout=120)
    assert process.returncode == ExitCode.INTERRUPTED
    assert "interrupted" in errors.decode() and "Traceback" not in errors.decode()
    cut = tmp_path / "cut.nut"
    cut.write_bytes(received + rest)
    assert 0 < len(frame_times(cut)) < 3000  # what was sent is readable; the rest never came
