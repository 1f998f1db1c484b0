"""The GPU parts of the pipeline, the VapourSynth filter and the batch, checked on the CPU (issue #12).

No GPU here, so the conditions are made observable on the CPU instead of faked with mocks:

* every thread that touches the model binds itself to the upscaler's device first:
  ``cuda_support.use_device_in_this_thread`` records each binding on every device, CPU included,
  and ``device_of_thread`` reads it back;
* after a failure, a tensor the failing code allocated is garbage (a weak reference to it is
  dead) while the error is still held, with the garbage collector switched off, so nothing but
  the cleared frames can have freed it;
* the host buffer rings give their buffers back to a bounded pool (unpinned here: the pool's
  logic is the same);
* the count of non-finite model outputs and the bf16 warning reach the user.

The upscaler is real (a tiny VapSR on the CPU); ``Watched`` wraps it to see which thread calls it.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from batch_helpers import make_clip, save_tiny_weights
from video_helpers import FFMPEG, FRAMES, ffmpeg, nearest_neighbour_vapsr, video_source

from vapsr_video.batch.dispatch import Done, Unit
from vapsr_video.batch.jobs_db import Claim, JobRow
from vapsr_video.batch.local_backend import LocalBackend
from vapsr_video.batch.tasks import UnitSettings, classify_error, forget_failure
from vapsr_video.inference.cuda_support import PinnedBufferPool, device_of_thread
from vapsr_video.inference.options import ModelOptions
from vapsr_video.inference.upscaler import Upscaler
from vapsr_video.model.vapsr import VapSR
from vapsr_video.model.weights import save_weights
from vapsr_video.vapoursynth.formats import FLOAT, RGB, ClipDescription
from vapsr_video.vapoursynth.processor import FilterOptions, FrameProcessor
from vapsr_video.video.channels import SlotRing
from vapsr_video.video.encoder import EncodeOptions
from vapsr_video.video.pipeline import upscale_video

CPU = torch.device("cpu")
MIB = 1 << 20


class Watched:
    """A real :class:`Upscaler` that notes, at every call, the device the calling thread is bound to.

    ``fail_at``: raise on that call (1-based) after allocating a tensor (``allocations`` holds weak
    references to it). ``nonfinite_per_call``: add to ``nonfinite_pixels`` per call, as the
    Upscaler's own counter does when the model gives NaN.
    """

    def __init__(self, inner: Upscaler, *, fail_at: int | None = None, nonfinite_per_call: int = 0) -> None:
        self.inner = inner
        self.fail_at = fail_at
        self.nonfinite_per_call = nonfinite_per_call
        self.calls = 0
        self.nonfinite_pixels = 0
        self.bound_devices: list[torch.device | None] = []
        self.allocations: list[weakref.ref[torch.Tensor]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        self.bound_devices.append(device_of_thread())
        self.calls += 1
        if self.calls == self.fail_at:
            scratch = torch.ones(MIB)  # stands for the activations of a batch that ran out of memory
            self.allocations.append(weakref.ref(scratch))
            raise RuntimeError("CUDA out of memory (simulated)")
        self.nonfinite_pixels += self.nonfinite_per_call
        return self.inner(frames)


@contextlib.contextmanager
def garbage_collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_weights(tmp_path_factory.mktemp("weights") / "tiny-x2.safetensors")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if FFMPEG is None:
        pytest.skip("Debian's ffmpeg is not installed (apt-get install ffmpeg)")
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", seconds=0.6, audio=False)


def cpu_upscaler(tiny_model: VapSR) -> Upscaler:
    return Upscaler(model=tiny_model, device="cpu")


# ------------------------------------------------------------------ threads bind their device first

def test_the_pipeline_threads_that_use_the_model_bind_its_device(tmp_path: Path, clip: Path, tiny_model) -> None:
    upscaler = Watched(cpu_upscaler(tiny_model))
    encode_thread_devices: list[torch.device | None] = []
    result = upscale_video(clip, tmp_path / "out.mkv", upscaler, batch_size=2,  # type: ignore[arg-type]
                           progress=lambda _: encode_thread_devices.append(device_of_thread()))
    assert result.frames == 6
    assert upscaler.bound_devices and set(upscaler.bound_devices) == {CPU}  # the inference worker
    assert encode_thread_devices and set(encode_thread_devices) == {CPU}  # the encode thread


def test_vapoursynth_frames_bind_the_thread_vapoursynth_calls_from(weights: Path) -> None:
    processor = FrameProcessor(ClipDescription(16, 12, RGB, FLOAT, 32, "RGBS"),
                               FilterOptions(weights=weights, device="cpu"))
    seen: list[torch.device | None] = []

    def one_frame() -> None:  # as a VapourSynth worker thread would
        sources = [np.random.default_rng(plane).random((12, 16), dtype=np.float32) for plane in range(3)]
        targets = [np.zeros((24, 32), np.float32) for _ in range(3)]
        processor.process(sources, targets)
        seen.append(device_of_thread())

    threads = [threading.Thread(target=one_frame) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [CPU, CPU]


def test_batch_worker_threads_bind_their_device(tmp_path: Path, weights: Path) -> None:
    backend = LocalBackend("cpu")
    workers = backend.start(ModelOptions(weights=str(weights)), UnitSettings(dst=tmp_path))
    try:
        threads = [thread for thread in threading.enumerate() if thread.name == workers[0].name]
        assert len(threads) == 1
        deadline = time.monotonic() + 10
        while device_of_thread(threads[0]) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert device_of_thread(threads[0]) == CPU
    finally:
        backend.close()


# ------------------------------------------------------------------ memory after a failure

def test_a_failed_video_job_holds_no_tensor_of_the_failing_batch(tmp_path: Path, clip: Path, tiny_model) -> None:
    upscaler = Watched(cpu_upscaler(tiny_model), fail_at=2)
    target = tmp_path / "out.mkv"
    with garbage_collector_off(), pytest.raises(RuntimeError, match="simulated") as failure:
        upscale_video(clip, target, upscaler, batch_size=2)  # type: ignore[arg-type]
    assert upscaler.allocations and upscaler.allocations[0]() is None, "the failed batch's tensor is still alive"
    assert any(entry.name == "__call__" for entry in failure.traceback), "the traceback must stay readable"
    assert not target.exists()


def _failing_unit(allocations: list[weakref.ref[torch.Tensor]]) -> None:
    scratch = torch.ones(MIB)
    allocations.append(weakref.ref(scratch))
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")


def test_a_failed_batch_unit_keeps_its_message_but_not_its_memory() -> None:
    allocations: list[weakref.ref[torch.Tensor]] = []
    with garbage_collector_off():
        try:
            _failing_unit(allocations)
        except BaseException as exc:
            failure = forget_failure(exc, CPU)
        assert allocations[0]() is None
        assert failure.__traceback__ is None
        reason, permanent = classify_error(failure)  # what the job database records is intact
        assert reason.startswith("out of device memory (CUDA out of memory. Tried to allocate 2.00 GiB")
        assert not permanent


@dataclass(frozen=True)
class WatchedModel(ModelOptions):
    """Model options whose upscalers fail on their first call (and are kept for inspection)."""

    built: list = None  # type: ignore[assignment]

    def build(self, device: str | torch.device | None = None) -> Upscaler:
        upscaler = Watched(super().build(device), fail_at=1)
        self.built.append(upscaler)
        return upscaler  # type: ignore[return-value]


def _job_claim(source: Path, output: Path) -> Claim:
    row = JobRow(id=1, rel_path=source.name, source=str(source), output=str(output), fingerprint="x",
                 state="running", reason=None, permanent=False, attempts=1, interruptions=0, segmented=False,
                 owner=None, input_bytes=None, duration=0.6, est_frames=6, frames=None, work_seconds=None,
                 output_bytes=None, started=None, finished=None, run_id=None)
    return Claim("job", row)


def test_a_batch_worker_reports_a_failure_without_its_traceback_or_memory(tmp_path: Path, clip: Path,
                                                                         weights: Path) -> None:
    built: list[Watched] = []
    backend = LocalBackend("cpu")
    backend.start(WatchedModel(weights=str(weights), built=built), UnitSettings(dst=tmp_path / "dst"))
    try:
        with garbage_collector_off():
            backend.submit(backend.workers()[0].name, Unit(_job_claim(clip, tmp_path / "dst" / "clip.mp4"), 0),
                           lambda _: None)
            ended: list[Done] = []
            deadline = time.monotonic() + 120
            while not ended and time.monotonic() < deadline:
                ended = backend.wait(0.2)
            assert len(ended) == 1 and isinstance(ended[0].outcome, RuntimeError)
            assert ended[0].outcome.__traceback__ is None
            assert "simulated" in str(ended[0].outcome)
            assert built[0].allocations[0]() is None
    finally:
        backend.close()


# ------------------------------------------------------------------ pinned host buffers stay bounded

def test_a_ring_gives_its_buffers_back_and_the_next_job_of_that_size_reuses_them() -> None:
    pool = PinnedBufferPool(64 * MIB, pin=False)
    stop = threading.Event()
    first = SlotRing(4, 1000, torch.uint8, True, stop, pool)
    buffers = {id(buffer) for buffer in first.buffers}
    first.close()
    assert pool.kept_bytes == 4 * 1000
    second = SlotRing(4, 1000, torch.uint8, True, stop, pool)
    assert {id(buffer) for buffer in second.buffers} == buffers
    assert pool.kept_bytes == 0


def test_rings_of_many_frame_sizes_keep_the_pool_under_its_limit() -> None:
    pool = PinnedBufferPool(2 * MIB, pin=False)
    stop = threading.Event()
    for width in range(64, 64 * 30, 64):  # one job per frame size, as in a batch over a mixed archive
        ring = SlotRing(8, width * width // 4 * 6, torch.uint8, True, stop, pool)
        slot = ring.acquire()
        ring.arrays[slot][:] = 7  # used like a decoded frame
        ring.release(slot)
        ring.close()
        assert pool.kept_bytes <= 2 * MIB


# ------------------------------------------------------------------ what the user is told

def test_the_video_result_counts_the_nonfinite_pixels_of_its_own_job(tmp_path: Path, clip: Path,
                                                                     tiny_model) -> None:
    upscaler = Watched(cpu_upscaler(tiny_model), nonfinite_per_call=5)
    first = upscale_video(clip, tmp_path / "a.mkv", upscaler, batch_size=2)  # type: ignore[arg-type]
    assert first.nonfinite_pixels == 5 * 3  # 6 frames in batches of 2
    second = upscale_video(clip, tmp_path / "b.mkv", upscaler, batch_size=3)  # type: ignore[arg-type]
    assert second.nonfinite_pixels == 5 * 2  # this job's, not the upscaler's running total
    clean = upscale_video(clip, tmp_path / "c.mkv", cpu_upscaler(tiny_model))
    assert clean.nonfinite_pixels == 0


def _overflowing_weights(path: Path) -> Path:
    """Finite weights (so they load) that overflow float32 inside the network: infinity minus
    infinity, i.e. NaN, for every output pixel whose input is not black."""
    model = nearest_neighbour_vapsr(2)
    with torch.no_grad():
        expand, project = model.upsampler[0], model.upsampler[2]
        for channel in range(3):
            model.conv_first.weight[channel, channel, 1, 1] = 3e38
            expand.weight[channel, channel, 1, 1] = 3e38
            for sub_pixel in range(4):
                project.weight[channel * 4 + sub_pixel, (channel + 1) % 3, 1, 1] = -1.0
    save_weights(model, path)
    return path


def test_the_cli_warns_once_about_nonfinite_model_output(tmp_path: Path, clip: Path, run_cli: Callable) -> None:
    if not hasattr(Upscaler, "nonfinite_pixels"):
        pytest.skip("this Upscaler does not count non-finite outputs yet (issue #12, engine part)")
    weights = _overflowing_weights(tmp_path / "overflow.safetensors")
    result = run_cli(clip, tmp_path / "out.mkv", "--weights", weights, "--device", "cpu", "--quiet")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if str(tmp_path / "out.mkv") in line and "NaN" in line]
    assert len(lines) == 1, result.stderr
    assert "output pixel(s)" in lines[0]


def test_the_overflowing_weights_really_give_nan(tmp_path: Path) -> None:
    # Keeps the CLI test above honest: its weights must make the raw network produce NaN.
    from vapsr_video.model.weights import load_model

    model = load_model(_overflowing_weights(tmp_path / "overflow.safetensors"))
    with torch.no_grad():
        output = model(torch.full((1, 3, 8, 8), 0.5))
    assert torch.isnan(output).float().mean() > 0.9


@pytest.fixture(scope="module")
def ten_bit_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ten-bit") / "ten-bit.mkv"
    ffmpeg(*video_source(), "-vf", f"trim=end_frame={FRAMES // 4}", "-c:v", "ffv1", "-pix_fmt", "yuv420p10le", path)
    return path


def test_bf16_for_deeper_than_8_bit_output_warns_with_the_measured_error(
        tmp_path: Path, ten_bit_clip: Path, clip: Path, tiny_model, caplog: pytest.LogCaptureFixture) -> None:
    bf16 = Upscaler(model=tiny_model, device="cpu", precision="bf16")
    target = tmp_path / "deep.mkv"
    with caplog.at_level(logging.WARNING, logger="vapsr_video"):
        upscale_video(ten_bit_clip, target, bf16, EncodeOptions(codec="ffv1"))
    # Only the output-depth warning counts: CPUs without native bf16 add one about speed.
    warnings = [record.getMessage() for record in caplog.records if "-bit output" in record.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{target}: ") and "10-bit" in warnings[0] and "18 code values" in warnings[0]

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vapsr_video"):
        upscale_video(clip, tmp_path / "eight.mkv", bf16)  # 8-bit output: bf16 is within 4 code values
        upscale_video(ten_bit_clip, tmp_path / "fp32.mkv", cpu_upscaler(tiny_model), EncodeOptions(codec="ffv1"))
    assert not [record for record in caplog.records if "-bit output" in record.getMessage()]
