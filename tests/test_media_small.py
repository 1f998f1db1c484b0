"""Issue #11 item 7: frame count estimates, chapter tracks, and tiles that are mostly overlap."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from video_helpers import chapters, ffmpeg, needs_ffmpeg, streams

from vapsr_video.inference.upscaler import Upscaler, tiling_cost
from vapsr_video.video.probe import probe_video

pytestmark = needs_ffmpeg


def test_mkv_frame_estimate_counts_from_the_stream_start(tmp_path: Path) -> None:
    # Matroska states no frame count; its DURATION tag says where the video ends (0.823 s here, since
    # B-frames delay the first timestamp to 0.023 s), which estimated 21 frames for these 20.
    source = tmp_path / "clip.mkv"
    ffmpeg("-f", "lavfi", "-i", "mandelbrot=s=64x48:r=25", "-f", "lavfi", "-i", "sine", "-t", "0.8",
           "-c:v", "libx264", "-c:a", "aac", source)
    info = probe_video(source)
    assert info.start_time > 0 and not info.frames_exact
    assert info.frames == 20


def test_mp4_chapters_are_kept_without_a_false_warning(tmp_path: Path, tiny_weights: Path,
                                                       run_cli: Callable) -> None:
    chapter_file = tmp_path / "chapters.txt"
    chapter_file.write_text(";FFMETADATA1\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=200\ntitle=One\n"
                            "[CHAPTER]\nTIMEBASE=1/1000\nSTART=200\nEND=400\ntitle=Two\n")
    source = tmp_path / "chapters.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x48:r=25", "-f", "lavfi", "-i", "sine", "-i", chapter_file,
           "-map", "0:v", "-map", "1:a", "-map_chapters", "2", "-t", "0.4", "-c:v", "libx264", "-c:a", "aac", source)
    assert [s["codec_type"] for s in streams(source)] == ["video", "audio", "data"]  # the chapter text track
    for suffix in (".mkv", ".mp4"):
        target = tmp_path / f"out{suffix}"
        result = run_cli(source, target, "--weights", tiny_weights)
        assert result.returncode == 0, result.stderr
        assert "left out" not in result.stderr and "left out" not in result.stdout
        assert [c["tags"]["title"] for c in chapters(target)] == ["One", "Two"]
        assert [s["codec_type"] for s in streams(target)][:2] == ["video", "audio"]


def test_tiles_made_mostly_of_overlap_are_announced(tiny_model_factory: Callable,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    assert tiling_cost(32, 40) == pytest.approx(12.25)
    with caplog.at_level(logging.WARNING, logger="vapsr_video"):
        Upscaler(model=tiny_model_factory(scale=2), device="cpu", tile=32, tile_overlap=40)
    assert "tile overlap 40 around 32-pixel tiles" in caplog.text and "12x" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vapsr_video"):
        Upscaler(model=tiny_model_factory(scale=2), device="cpu", tile=256, tile_overlap=40)
        Upscaler(model=tiny_model_factory(scale=2), device="cpu", tile=0, tile_overlap=40)
    assert caplog.text == ""


def test_an_estimated_progress_total_ends_at_100_percent() -> None:
    from vapsr_video.cli.upscale import _LazyBar

    bar = _LazyBar(total=21, name="clip.mkv", quiet=False)  # the estimate said 21; the file had 20
    for _ in range(5):
        bar.update(4)
    bar.finished()
    assert bar.bar is not None and bar.bar.n == bar.bar.total == 20
    bar.close()
