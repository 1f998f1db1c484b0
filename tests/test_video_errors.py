"""Bad inputs and outputs: one line naming the file and the cause, a documented exit code, nothing half-written."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from video_helpers import (
    FRAMES,
    corrupt_one_packet,
    default_sigint,
    ffmpeg,
    frame_times,
    make_bayer_nut,
    make_prores_pcm_mov,
    make_vfr_h264_aac_mp4,
    needs_ffmpeg,
)

from vapsr_video.errors import ExitCode, InputError, OutputError, UsageError
from vapsr_video.inference.upscaler import Upscaler
from vapsr_video.safe_output import TEMP_PREFIX
from vapsr_video.video.encoder import EncodeOptions
from vapsr_video.video.pipeline import upscale_video
from vapsr_video.video.probe import probe_video

pytestmark = needs_ffmpeg


@pytest.fixture
def upscaler(tiny_model) -> Upscaler:
    return Upscaler(model=tiny_model, device="cpu")


@pytest.fixture(scope="module")
def good_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_vfr_h264_aac_mp4(tmp_path_factory.mktemp("good") / "good.mp4")


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX)]


def truncated_copy(source: Path, target: Path) -> Path:
    target.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    return target


def written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


BAD_INPUTS: dict[str, tuple[Callable[[Path, Path], Path], str]] = {
    "missing": (lambda folder, good: folder / "nothing-here.mp4", "no such file"),
    "empty": (lambda folder, good: written(folder / "empty.mp4", b""), "empty"),
    "not media": (lambda folder, good: written(folder / "notes.mp4", b"just some text\n" * 50), "not a media file"),
    "truncated": (lambda folder, good: truncated_copy(good, folder / "cut.mp4"), "truncated"),
    "audio only": (lambda folder, good: _audio_only(folder / "song.m4a"), "no video stream"),
    "bayer": (lambda folder, good: make_bayer_nut(folder / "sensor.nut"), "unsupported pixel format bayer_rggb8"),
}


def _audio_only(path: Path) -> Path:
    ffmpeg("-f", "lavfi", "-i", "sine=duration=0.5", "-c:a", "aac", path)
    return path


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_inputs_are_refused_with_the_file_and_the_cause(tmp_path: Path, good_clip: Path, upscaler: Upscaler,
                                                            case: str) -> None:
    make, cause = BAD_INPUTS[case]
    source = make(tmp_path, good_clip)
    with pytest.raises(InputError) as probed:
        probe_video(source)
    target = tmp_path / "out.mkv"
    with pytest.raises(InputError) as upscaled:
        upscale_video(source, target, upscaler)
    for error in (probed.value, upscaled.value):
        message = str(error)
        assert str(source) in message and cause in message and "\n" not in message
    assert not target.exists() and not leftovers(tmp_path)


def test_output_problems_are_refused_before_any_work(tmp_path: Path, good_clip: Path, upscaler: Upscaler) -> None:
    with pytest.raises(OutputError, match="is the input file"):
        upscale_video(good_clip, good_clip, upscaler)
    with pytest.raises(OutputError, match="does not exist"):
        upscale_video(good_clip, tmp_path / "no-such-folder" / "out.mp4", upscaler)
    existing = tmp_path / "existing.mp4"
    existing.write_bytes(b"precious")
    with pytest.raises(OutputError, match="already exists"):
        upscale_video(good_clip, existing, upscaler)
    assert existing.read_bytes() == b"precious"
    with pytest.raises(OutputError, match="extension"):
        upscale_video(good_clip, tmp_path / "out.unknownext", upscaler)
    with pytest.raises(UsageError, match="--crf does not apply to prores_ks"):
        upscale_video(good_clip, tmp_path / "out.mov", upscaler, EncodeOptions(codec="prores_ks", crf=20))
    assert not leftovers(tmp_path) and not (tmp_path / "out.mov").exists()
    result = upscale_video(good_clip, existing, upscaler, overwrite=True)
    assert result.frames == FRAMES and existing.stat().st_size == result.output_bytes


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_unwritable_output_folder(tmp_path: Path, good_clip: Path, upscaler: Upscaler) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="not writable"):
            upscale_video(good_clip, folder / "out.mp4", upscaler)
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize("index, skipped", [(5, True), (5, False)])
def test_damaged_video_data_is_reported_and_the_rest_keep_their_times(
        tmp_path: Path, good_clip: Path, upscaler: Upscaler, caplog: pytest.LogCaptureFixture,
        index: int, skipped: bool) -> None:
    """Policy (docs/video.md): a packet the decoder rejects is skipped; a frame it conceals is kept.
    Either way a warning names the file, the job finishes, and no other frame moves in time."""
    damaged = corrupt_one_packet(good_clip, tmp_path / "damaged.mkv", index=index, reject=skipped)
    target = tmp_path / "out.mkv"
    with caplog.at_level("WARNING"):
        result = upscale_video(damaged, target, upscaler)
    assert result.decode_errors >= 1
    warnings = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    if skipped or result.frames < FRAMES:  # noise may also make the decoder refuse the packet
        assert FRAMES - 3 <= result.frames < FRAMES  # the rejected frame (and any that needed it) is gone
        assert "skipping a damaged video packet" in warnings
    else:
        assert result.frames == FRAMES
        assert "concealed it (the frame is kept)" in warnings
    assert str(damaged) in warnings and "damaged" in warnings
    assert f"{result.frames} frames written" in warnings
    produced = [round(float(t), 3) for t in frame_times(target)]
    original = [round(float(t), 3) for t in frame_times(good_clip)]
    assert len(produced) == result.frames
    assert set(produced) <= set(original)  # nothing shifted in time: a gap stays where the damage was


def _cli(*args: str | Path, limit_file_size: int | None = None) -> subprocess.Popen:
    def limits() -> None:
        default_sigint()
        if limit_file_size is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so the write fails with EFBIG, as on a full disk
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_size, limit_file_size))

    return subprocess.Popen([sys.executable, "-m", "vapsr_video", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=limits)


def test_cli_bad_input_is_one_line_and_exit_code_3(tmp_path: Path, tiny_weights: Path) -> None:
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video\n" * 20)
    process = _cli(notes, tmp_path / "out.mp4", "--weights", tiny_weights)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == ExitCode.BAD_INPUT
    assert stderr.strip().count("\n") == 0 and "Traceback" not in stderr
    assert str(notes) in stderr and "not a media file" in stderr


def test_cli_full_disk_is_exit_code_4_and_leaves_nothing(tmp_path: Path, tiny_weights: Path) -> None:
    source = make_prores_pcm_mov(tmp_path / "input.mov")  # ProRes: the output is far above the limit
    folder = tmp_path / "out"
    folder.mkdir()
    process = _cli(source, folder / "big.mov", "--weights", tiny_weights, "--quiet", limit_file_size=60_000)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == ExitCode.BAD_OUTPUT, stderr
    assert "no space left" in stderr and str(folder / "big.mov") in stderr and "Traceback" not in stderr
    assert list(folder.iterdir()) == []


def test_cli_ctrl_c_exits_130_and_leaves_nothing(tmp_path: Path, tiny_weights: Path) -> None:
    source = tmp_path / "long.mkv"
    ffmpeg("-f", "lavfi", "-i", "gradients=size=64x48:rate=25:speed=0.1", "-frames:v", "3000",
           "-c:v", "libx264", "-preset", "ultrafast", source)
    folder = tmp_path / "out"
    folder.mkdir()
    process = _cli(source, folder / "long.mkv", "--weights", tiny_weights, "--quiet")
    deadline = time.monotonic() + 120
    while not leftovers(folder) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # well inside the job
    assert process.poll() is None, "the job finished before it could be interrupted"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == ExitCode.INTERRUPTED
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert list(folder.iterdir()) == []
