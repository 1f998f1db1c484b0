"""Issue #9, single-file side: short inputs, hostile sizes, signals, leftovers, races at OUT, bad arguments.

Every test runs the real thing: clips made by Debian's ffmpeg and cut with plain
file operations, crafted files written byte by byte, ``python -m vapsr_video``
in a child process that receives real signals or runs under a real address-space
limit.
"""

from __future__ import annotations

import os
import resource
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from video_helpers import default_sigint, ffmpeg, frame_times, needs_ffmpeg, streams

from vapsr_video.errors import ExitCode, InputError
from vapsr_video.inference.upscaler import Upscaler
from vapsr_video.safe_output import TEMP_PREFIX
from vapsr_video.video.pipeline import upscale_video

pytestmark = needs_ffmpeg

REPO_ROOT = Path(__file__).resolve().parents[1]
ADDRESS_SPACE_LIMIT = 4 * 1024**3  # torch and PyAV start well under it; one huge frame buffer would not fit


@pytest.fixture
def upscaler(tiny_model) -> Upscaler:
    return Upscaler(model=tiny_model, device="cpu")


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX)]


def cli(*args: str | Path, preexec: Callable[[], None] | None = None, timeout: float = 300) -> \
        subprocess.CompletedProcess[str]:
    def setup() -> None:
        default_sigint()
        if preexec is not None:
            preexec()

    return subprocess.run([sys.executable, "-m", "vapsr_video", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=setup, cwd=REPO_ROOT)


def one_line(stderr: str) -> bool:
    return stderr.strip().count("\n") == 0 and "Traceback" not in stderr


def cut(source: Path, target: Path, share: float) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * share)])
    return target


# ------------------------------------------------------------------ completeness


@pytest.fixture(scope="module")
def mkv_24_frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mkv") / "clip.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=24:duration=1", "-f", "lavfi", "-i", "sine=duration=1",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", path)
    return path


def test_mkv_cut_at_60_percent_is_refused_with_exit_3_and_no_output(
        tmp_path: Path, mkv_24_frames: Path, tiny_weights: Path) -> None:
    source = cut(mkv_24_frames, tmp_path / "cut.mkv", 0.6)
    target = tmp_path / "out.mkv"
    result = cli(source, target, "--weights", tiny_weights, "--quiet")
    assert result.returncode == ExitCode.BAD_INPUT, result.stderr
    assert one_line(result.stderr) and str(source) in result.stderr and "truncated" in result.stderr
    assert "--allow-partial" in result.stderr
    assert not target.exists() and not leftovers(tmp_path)


def test_allow_partial_keeps_what_was_decoded_with_a_warning(
        tmp_path: Path, mkv_24_frames: Path, tiny_weights: Path) -> None:
    source = cut(mkv_24_frames, tmp_path / "cut.mkv", 0.6)
    target = tmp_path / "out.mkv"
    result = cli(source, target, "--weights", tiny_weights, "--allow-partial")
    assert result.returncode == 0, result.stderr
    assert "warning" in result.stderr and "truncated" in result.stderr and str(source) in result.stderr
    assert 8 <= len(frame_times(target)) < 24
    assert "cut short" in result.stdout


def test_mp4_with_its_tail_cut_is_refused(tmp_path: Path, upscaler: Upscaler) -> None:
    whole = tmp_path / "whole.mp4"
    # Index at the front (as web videos are), so the file still opens once its tail is gone.
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=24:duration=2", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           "-movflags", "+faststart", whole)
    source = cut(whole, tmp_path / "tail-cut.mp4", 0.7)
    target = tmp_path / "out.mp4"
    with pytest.raises(InputError, match=r"tail-cut\.mp4: truncated or cut short"):
        upscale_video(source, target, upscaler)
    assert not target.exists() and not leftovers(tmp_path)
    # The whole file passes: its last frame ends where its header says.
    assert upscale_video(whole, target, upscaler).frames == 48


def test_time_ranges_are_checked_against_the_range_not_the_whole_file(tmp_path: Path, mkv_24_frames: Path,
                                                                      upscaler: Upscaler) -> None:
    middle = upscale_video(mkv_24_frames, tmp_path / "middle.mkv", upscaler, time_range=(0.25, 0.5))
    assert middle.frames == 6 and middle.partial is None
    tail = upscale_video(mkv_24_frames, tmp_path / "tail.mkv", upscaler, time_range=(0.5, 60.0))
    assert tail.frames == 12 and tail.partial is None
    source = cut(mkv_24_frames, tmp_path / "cut.mkv", 0.6)
    early = upscale_video(source, tmp_path / "early.mkv", upscaler, time_range=(0.0, 0.25))
    assert early.frames == 6  # the cut is after the range: nothing is missing from it
    with pytest.raises(InputError, match="truncated"):
        upscale_video(source, tmp_path / "late.mkv", upscaler, time_range=(0.5, 1.0))


def test_audio_longer_than_the_video_is_not_a_short_read(tmp_path: Path, upscaler: Upscaler) -> None:
    source = tmp_path / "long-audio.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=24:duration=0.5", "-f", "lavfi", "-i", "sine=duration=2",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "flac", source)
    assert upscale_video(source, tmp_path / "out.mkv", upscaler).frames == 12


def without_stream_durations(source: Path, target: Path) -> Path:
    """The same Matroska file as mkvmerge would write it: a segment duration but no per-stream
    ``DURATION`` tags (renamed in place, so every offset in the file stays valid)."""
    data = source.read_bytes()
    assert data.count(b"DURATION") >= 2
    target.write_bytes(data.replace(b"DURATION", b"DURATIOX"))
    return target


def test_matroska_without_stream_durations_is_checked_against_the_whole_file(
        tmp_path: Path, upscaler: Upscaler) -> None:
    whole = tmp_path / "whole.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=24:duration=1", "-f", "lavfi", "-i", "sine=duration=1.5",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", whole)
    untagged = without_stream_durations(whole, tmp_path / "untagged.mkv")
    # The audio runs 0.5 s past the video: it reaches the segment's end, so nothing is missing.
    assert upscale_video(untagged, tmp_path / "out.mkv", upscaler).frames == 24
    source = cut(untagged, tmp_path / "cut.mkv", 0.6)
    with pytest.raises(InputError, match=r"cut\.mkv: truncated or cut short: the file stops at"):
        upscale_video(source, tmp_path / "out-cut.mkv", upscaler)
    assert not (tmp_path / "out-cut.mkv").exists() and not leftovers(tmp_path)


def test_mpegts_output_is_written(tmp_path: Path, mkv_24_frames: Path, upscaler: Upscaler) -> None:
    target = tmp_path / "out.ts"  # once refused: "no available video encoder can write a mpegts file"
    assert upscale_video(mkv_24_frames, target, upscaler, copy_streams=False).frames == 24
    assert next(s for s in streams(target) if s["codec_type"] == "video")["codec_name"] == "h264"


# ------------------------------------------------------------------ sizes


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares ``width`` x ``height`` but which holds only a few rows (a few KB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(width * 3) for _ in range(8))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))
    return path


def limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))


def test_png_declaring_16000x16000_is_refused_before_it_is_decoded(tmp_path: Path, tiny_weights: Path) -> None:
    source = png_declaring(tmp_path / "bomb.png", 16000, 16000)
    assert source.stat().st_size < 10_000
    target = tmp_path / "out.png"
    result = cli(source, target, "--weights", tiny_weights, preexec=limit_address_space)
    assert result.returncode == ExitCode.BAD_INPUT, result.stderr
    assert one_line(result.stderr) and str(source) in result.stderr and "16000x16000" in result.stderr
    assert "--max-pixels" in result.stderr and not target.exists() and not leftovers(tmp_path)


def test_video_larger_than_max_pixels_is_refused_from_its_header(tmp_path: Path, tiny_weights: Path) -> None:
    source = tmp_path / "big.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=black:size=4096x4096:rate=1", "-frames:v", "1", "-c:v", "libx264",
           "-preset", "ultrafast", "-pix_fmt", "yuv420p", source)
    target = tmp_path / "out.mp4"
    result = cli(source, target, "--weights", tiny_weights, "--max-pixels", "1000000", preexec=limit_address_space)
    assert result.returncode == ExitCode.BAD_INPUT, result.stderr
    assert one_line(result.stderr) and str(source) in result.stderr and "4096x4096" in result.stderr
    assert not target.exists() and not leftovers(tmp_path)


# ------------------------------------------------------------------ signals, leftovers, races


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("long") / "long.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-frames:v", "3000", "-c:v", "libx264",
           "-preset", "ultrafast", path)
    return path


def default_stop_signals() -> None:
    """Undo what the shell running the suite may have set (background jobs ignore SIGINT, nohup SIGHUP)."""
    default_sigint()
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


class Running:
    """``vapsr-video`` in a child process, with its stderr collected as it comes."""

    def __init__(self, *args: str | Path) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "vapsr_video", *map(str, args)],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        preexec_fn=default_stop_signals, cwd=REPO_ROOT)
        self.stderr = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        while chunk := os.read(self.process.stderr.fileno(), 4096):
            self.stderr += chunk

    def wait_for_frames(self, timeout: float = 120) -> None:
        """Until the progress bar shows frames done (the job is inside frame processing)."""
        deadline = time.monotonic() + timeout
        while b"frame/s" not in self.stderr and self.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.process.poll() is None, f"the job ended early: {self.stderr.decode(errors='replace')}"
        assert b"frame/s" in self.stderr, "no progress within the time limit"

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code, self.stderr.decode(errors="replace")


STOPS = [pytest.param(signal.SIGINT, ExitCode.INTERRUPTED, "interrupted", id=f"SIGINT-{n}") for n in range(3)] + [
    pytest.param(signal.SIGTERM, ExitCode.TERMINATED, "terminated", id="SIGTERM"),
    pytest.param(signal.SIGHUP, ExitCode.HANGUP, "hung up", id="SIGHUP"),
]


@pytest.mark.slow
@pytest.mark.parametrize("signum, code, word", STOPS)
def test_a_signal_during_frame_processing_stops_cleanly(tmp_path: Path, long_clip: Path, tiny_weights: Path,
                                                        signum: int, code: int, word: str) -> None:
    target = tmp_path / "out.mkv"
    job = Running(long_clip, target, "--weights", tiny_weights)
    job.wait_for_frames()
    job.process.send_signal(signum)
    returncode, stderr = job.finish()
    assert returncode == code, stderr
    assert f"error: {word}" in stderr
    assert "terminate called" not in stderr and "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_killed_run_leaves_a_temporary_that_the_next_run_removes(tmp_path: Path, long_clip: Path,
                                                                   tiny_weights: Path) -> None:
    target = tmp_path / "out.mkv"
    job = Running(long_clip, target, "--weights", tiny_weights)
    job.wait_for_frames()
    job.process.kill()
    job.finish()
    stale = leftovers(tmp_path)
    assert len(stale) == 1 and stale[0].endswith("-out.mkv")
    mine = tmp_path / f"{TEMP_PREFIX}not-ours.mkv"  # a name we did not make: never touched
    mine.write_bytes(b"x")
    short = tmp_path / "short.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-frames:v", "3", "-c:v", "libx264", short)
    result = cli(short, tmp_path / "next.mkv", "--weights", tiny_weights, "--quiet")
    assert result.returncode == 0, result.stderr
    assert leftovers(tmp_path) == [mine.name]


@pytest.mark.slow
def test_an_input_truncated_while_it_is_read_is_refused(tmp_path: Path, long_clip: Path,
                                                         tiny_weights: Path) -> None:
    source = tmp_path / "growing-smaller.mkv"
    source.write_bytes(long_clip.read_bytes())
    target = tmp_path / "out.mkv"
    job = Running(source, target, "--weights", tiny_weights)
    job.wait_for_frames()
    os.truncate(source, source.stat().st_size // 10)  # e.g. the copy it was reading from was cut short
    returncode, stderr = job.finish(timeout=300)
    assert returncode == ExitCode.BAD_INPUT, stderr
    assert str(source) in stderr and "truncated" in stderr and "Traceback" not in stderr
    assert not target.exists() and not leftovers(tmp_path)


@pytest.mark.slow
def test_a_file_that_appears_at_out_during_the_job_is_kept(tmp_path: Path, long_clip: Path,
                                                           tiny_weights: Path) -> None:
    source = tmp_path / "medium.mkv"
    ffmpeg("-i", long_clip, "-frames:v", "80", "-c", "copy", source)
    target = tmp_path / "out.mkv"
    job = Running(source, target, "--weights", tiny_weights)
    job.wait_for_frames()
    target.write_bytes(b"someone else's file")
    returncode, stderr = job.finish()
    assert returncode == ExitCode.BAD_OUTPUT, stderr
    assert str(target) in stderr and "already exists" in stderr
    assert target.read_bytes() == b"someone else's file" and not leftovers(tmp_path)


# ------------------------------------------------------------------ arguments


BAD_ARGUMENTS = {
    "tile": (["--tile", "-1"], "--tile"),
    "tile-overlap": (["--tile-overlap", "-5"], "--tile-overlap"),
    "crf": (["--crf", "999"], "--crf"),
    "batch-size": (["--batch-size", "0"], "--batch-size"),
    "max-pixels": (["--max-pixels", "0"], "--max-pixels"),
    "bitrate": (["--bitrate", "fast"], "--bitrate"),
    "encoder-option-form": (["--encoder-option", "novalue"], "--encoder-option"),
}


@pytest.mark.parametrize("case", BAD_ARGUMENTS)
def test_bad_arguments_are_refused_when_parsed(tmp_path: Path, mkv_24_frames: Path, case: str) -> None:
    arguments, option = BAD_ARGUMENTS[case]
    result = cli(mkv_24_frames, tmp_path / "out.mkv", *arguments, "--weights", "/nonexistent/weights.pth")
    # Exit 2, not 5: refused before the (missing) weights file was ever looked at.
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("vapsr-video: error: ") and option in message


ENCODER_REFUSALS = {
    "unknown option": (["--encoder-option", "bogus=1"], "libx264 has no option 'bogus'"),
    "crf past x264's scale": (["--crf", "60"], "--crf 60 is outside libx264's range 0-51"),
    "no encoder for the format": (["--codec", "libx264"], "cannot hold libx264"),
}


@pytest.mark.parametrize("case", ENCODER_REFUSALS)
def test_encoder_refusals_are_usage_errors_naming_the_output(tmp_path: Path, mkv_24_frames: Path,
                                                             tiny_weights: Path, case: str) -> None:
    arguments, message = ENCODER_REFUSALS[case]
    target = tmp_path / ("out.ogg" if case == "no encoder for the format" else "out.mkv")
    result = cli(mkv_24_frames, target, "--weights", tiny_weights, *arguments)
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert one_line(result.stderr) and str(target) in result.stderr and message in result.stderr
    assert not target.exists() and not leftovers(tmp_path)


def test_image_disk_full_names_the_output_not_its_temporary(tmp_path: Path, tiny_weights: Path) -> None:
    source = tmp_path / "photo.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48", "-frames:v", "1", source)
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "photo-x2.png"

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))

    result = cli(source, target, "--weights", tiny_weights, preexec=small_files)
    assert result.returncode == ExitCode.BAD_OUTPUT, result.stderr
    assert one_line(result.stderr) and str(target) in result.stderr and TEMP_PREFIX not in result.stderr
    assert list(folder.iterdir()) == []
