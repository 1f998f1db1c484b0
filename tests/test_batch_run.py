"""``run_batch`` as a library call, and the backend protocol: a backend written in a
few lines against ``dispatch.Backend`` alone runs a whole batch, segments included."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from batch_helpers import decodes_cleanly, frame_count, leftovers, make_clip, save_tiny_weights, video_size
from video_helpers import needs_ffmpeg

from vapsr_video.batch.dispatch import Done, Unit, Worker
from vapsr_video.batch.local_backend import LocalBackend
from vapsr_video.batch.run import BatchSettings, plan_batch, run_batch
from vapsr_video.batch.tasks import UnitSettings, run_unit
from vapsr_video.errors import UsageError
from vapsr_video.inference.options import ModelOptions
from vapsr_video.inference.upscaler import Upscaler
from vapsr_video.video.encoder import EncodeOptions

pytestmark = needs_ffmpeg


class InlineBackend:
    """One worker that runs each unit in the caller's thread as soon as it is submitted."""

    reports_frames = True

    def __init__(self) -> None:
        self.upscaler: Upscaler | None = None
        self.settings: UnitSettings | None = None
        self.ended: list[Done] = []
        self.units: list[str] = []

    def start(self, model: ModelOptions, settings: UnitSettings) -> list[Worker]:
        self.upscaler, self.settings = model.build("cpu"), settings
        return self.workers()

    def workers(self) -> list[Worker]:
        return [Worker("inline", "cpu")]

    def submit(self, worker: str, unit: Unit, frames_done: Callable[[int], None]) -> None:
        assert self.upscaler is not None and self.settings is not None
        self.units.append(unit.claim.kind)
        try:
            outcome = run_unit(unit.claim, self.settings, self.upscaler, unit.segment_count, frames_done)
        except Exception as exc:
            self.ended.append(Done(worker, exc))
        else:
            self.ended.append(Done(worker, outcome))

    def wait(self, timeout: float) -> list[Done]:
        ended, self.ended = self.ended, []
        return ended

    def cancel(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_weights(tmp_path_factory.mktemp("weights") / "tiny-x2.safetensors")


def test_a_backend_of_a_few_lines_runs_a_batch_with_segments(tmp_path: Path, weights: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_clip(src / "short.mp4", seconds=0.5)
    make_clip(src / "long.mp4", seconds=1.5, gop=5)
    (src / "broken.mp4").write_bytes(b"\x00" * 2000)
    model = ModelOptions(weights=str(weights))
    settings = BatchSettings(segment_seconds=0.5, max_attempts=1, quiet=True)
    backend = InlineBackend()

    report = run_batch(src, dst, model, EncodeOptions(crf=20), settings, backend)

    states = {entry.path: entry.state for entry in report.files}
    assert states == {"broken.mp4": "failed", "long.mp4": "done", "short.mp4": "done"}
    assert report.exit_code == 1
    assert backend.units.count("segment") == 3 and backend.units.count("assemble") == 1
    for name in ("short.mp4", "long.mp4"):
        assert video_size(dst / name) == (128, 96) and decodes_cleanly(dst / name)
        assert frame_count(dst / name) == frame_count(src / name)
    assert leftovers(dst) == []


def test_run_batch_on_local_threads_then_nothing_left_to_do(tmp_path: Path, weights: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_clip(src / "a.mp4", seconds=0.5)
    make_clip(src / "sub" / "b.mkv", seconds=0.5, audio=False)
    model, encode = ModelOptions(weights=str(weights)), EncodeOptions()
    settings = BatchSettings(quiet=True)

    threads = torch.get_num_threads()
    try:
        report = run_batch(src, dst, model, encode, settings, LocalBackend("cpu,cpu"))
    finally:
        torch.set_num_threads(threads)  # two CPU workers split the cores; later tests get them back

    assert report.exit_code == 0 and report.totals["done"] == 2
    assert frame_count(dst / "sub" / "b.mkv") == frame_count(src / "sub" / "b.mkv")
    assert {decision.action for decision in plan_batch(src, dst, model, encode, settings)} == {"up-to-date"}
    changed = ModelOptions(weights=str(weights), tile=32)  # another output: every file is to be redone
    assert {decision.action for decision in plan_batch(src, dst, changed, encode, settings)} == {"redo"}


def test_bad_settings_are_refused_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--max-attempts"):
        BatchSettings(max_attempts=0)
    (tmp_path / "src").mkdir()
    with pytest.raises(UsageError, match="names no device"):
        LocalBackend(" , ").start(ModelOptions(), UnitSettings(dst=tmp_path / "dst"))
