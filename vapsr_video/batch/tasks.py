"""Doing one claimed unit of work: a whole file, one segment, or an assembly.

Nothing here touches the job database, so the same code runs in a local worker
thread and in a Ray actor; the caller records the outcome. Everything a unit
writes goes to its own folder under ``DST/.vapsr-batch/work/<job id>/`` and
reaches its final path by an atomic rename, so a unit that dies leaves nothing
half-written anywhere else, and its leftovers are wiped when it is redone.
A unit that fails goes back to its caller as a bare exception (:func:`forget_failure`):
only its type and message are recorded, and the device memory it held is free for the next unit.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vapsr_video.batch.discovery import STATE_DIR_NAME
from vapsr_video.batch.jobs_db import Claim
from vapsr_video.batch.segments import SegmentRange, assemble, plan_segments
from vapsr_video.errors import InputError, OutputError, UsageError, VapsrError, WeightsError
from vapsr_video.inference.cuda_support import drop_traceback, release_device_memory
from vapsr_video.safe_output import publish as publish_file

if TYPE_CHECKING:
    from vapsr_video.inference.upscaler import Upscaler
    from vapsr_video.video.encoder import EncodeOptions
    from vapsr_video.video.pipeline import VideoResult

Progress = Callable[[int], None]
log = logging.getLogger("vapsr_video.batch")


@dataclass(frozen=True)
class UnitSettings:
    """Everything a unit of work needs besides its model; picklable, for Ray."""

    dst: Path
    encode: EncodeOptions | None = None  # None: the pipeline's defaults
    batch_size: int = 4
    segment_seconds: float = 300.0
    state_dir: Path = field(default=Path())

    def __post_init__(self) -> None:
        if self.state_dir == Path():
            object.__setattr__(self, "state_dir", self.dst / STATE_DIR_NAME)

    @property
    def work_root(self) -> Path:
        return self.state_dir / "work"

    def work_dir(self, job_id: int) -> Path:
        return self.work_root / str(job_id)

    def segment_path(self, job_id: int, idx: int, suffix: str) -> Path:
        return self.work_dir(job_id) / f"segment-{idx:05d}{suffix}"


@dataclass(frozen=True)
class Finished:
    frames: int
    seconds: float
    output_bytes: int = 0
    nonfinite_pixels: int = 0  # NaN/infinite model outputs replaced in this unit (see VideoResult)


@dataclass(frozen=True)
class Planned:
    ranges: list[SegmentRange]


def publish(staged: Path, final: Path) -> int:
    """Move a complete file to its final path (creating its folder); returns its size in bytes."""
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{final}: cannot write ({exc.strerror})") from exc
    # Batch outputs replace what a killed earlier attempt or an --overwrite run left there.
    publish_file(staged, final, overwrite=True)
    return final.stat().st_size


def fresh_folder(folder: Path) -> Path:
    """An empty folder: whatever a dead attempt left there is discarded."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _upscale(source: str, target: Path, upscaler: Upscaler, settings: UnitSettings, progress: Progress | None,
             **kwargs: Any) -> VideoResult:
    from vapsr_video.video.pipeline import upscale_video

    return upscale_video(source, target, upscaler, settings.encode, batch_size=settings.batch_size,
                         progress=progress, overwrite=True, **kwargs)


def _duration(source: str) -> float | None:
    from vapsr_video.batch.discovery import probe

    return probe(Path(source)).duration


def run_unit(claim: Claim, settings: UnitSettings, upscaler: Upscaler, segment_count: int,
             progress: Progress | None = None) -> Finished | Planned:
    """Run one claimed unit of any kind; ``segment_count`` matters only for an assembly."""
    if claim.kind == "segment":
        return run_segment(claim, settings, upscaler, progress)
    if claim.kind == "assemble":
        return run_assembly(claim, settings, segment_count)
    return run_job(claim, settings, upscaler, progress)


def run_job(claim: Claim, settings: UnitSettings, upscaler: Upscaler, progress: Progress | None = None
            ) -> Finished | Planned:
    """A new file: process it in one pass, or (when long) plan its segments."""
    job = claim.job
    work = fresh_folder(settings.work_dir(job.id))
    duration = job.duration if job.duration is not None else _duration(job.source)
    if settings.segment_seconds > 0 and duration and duration > 1.5 * settings.segment_seconds:
        ranges = plan_segments(job.source, settings.segment_seconds)
        if len(ranges) > 1:
            return Planned(ranges)
    started = time.perf_counter()
    staged = work / ("output" + Path(job.output).suffix)
    result = _upscale(job.source, staged, upscaler, settings, progress)
    size = publish(staged, Path(job.output))
    shutil.rmtree(work, ignore_errors=True)
    return Finished(result.frames, time.perf_counter() - started, size, result.nonfinite_pixels)


def run_segment(claim: Claim, settings: UnitSettings, upscaler: Upscaler, progress: Progress | None = None
                ) -> Finished:
    """One segment of a long file, kept in the job's work folder once complete."""
    assert claim.segment is not None
    job, segment = claim.job, claim.segment
    suffix = Path(job.output).suffix
    final = settings.segment_path(job.id, segment.idx, suffix)
    scratch = fresh_folder(final.with_suffix(".tmp"))
    started = time.perf_counter()
    start = float("-inf") if segment.start is None else segment.start
    end = float("inf") if segment.end is None else segment.end
    staged = scratch / ("segment" + suffix)
    result = _upscale(job.source, staged, upscaler, settings, progress, time_range=(start, end),
                      copy_streams=False)
    size = publish(staged, final)
    shutil.rmtree(scratch, ignore_errors=True)
    return Finished(result.frames, time.perf_counter() - started, size, result.nonfinite_pixels)


def run_assembly(claim: Claim, settings: UnitSettings, segment_count: int) -> Finished:
    """Join the finished segments of a long file into its final output."""
    job = claim.job
    suffix = Path(job.output).suffix
    pieces = [settings.segment_path(job.id, idx, suffix) for idx in range(segment_count)]
    missing = [p.name for p in pieces if not p.is_file()]
    if missing:
        raise OutputError(f"{job.output}: finished segments are missing from {settings.work_dir(job.id)}: "
                          f"{', '.join(missing)}")
    started = time.perf_counter()
    scratch = fresh_folder(settings.work_dir(job.id) / "assembly.tmp")
    staged = scratch / ("output" + suffix)
    frames = assemble(job.source, pieces, staged)
    size = publish(staged, Path(job.output))
    shutil.rmtree(settings.work_dir(job.id), ignore_errors=True)
    return Finished(frames, time.perf_counter() - started, size)


def forget_failure(exc: BaseException, device: torch.device) -> BaseException:
    """After a unit raised ``exc`` on ``device``: drop its traceback (whose frames hold the unit's
    tensors, often in a reference cycle that only the garbage collector would break), collect, and
    return cached device memory, so an out-of-memory retry on this worker does not meet the memory
    of the attempt that failed. Returns ``exc``, which keeps its type and message."""
    log.debug("unit failed", exc_info=exc)  # the traceback, for whoever runs with debug logging
    drop_traceback(exc)
    release_device_memory(device)
    return exc


def discard_work(settings: UnitSettings, job_id: int) -> None:
    shutil.rmtree(settings.work_dir(job_id), ignore_errors=True)


def classify_error(exc: BaseException) -> tuple[str, bool]:
    """(one-line reason, permanent) for an exception a unit raised.

    Permanent: the file or the options are at fault; retrying cannot help.
    Everything else is retried after a pause, up to the attempt limit: a machine
    momentarily short of something (device memory, disk space) and an unexpected
    error (maybe a fluke) alike. Passing shortages get no unlimited retries on
    purpose: a disk that stays full must not keep a batch busy all night.
    """
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, InputError | WeightsError | UsageError):
        return text, True
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text.lower():
        return f"out of device memory ({text})", False
    if isinstance(exc, VapsrError):
        return text, False
    return f"{type(exc).__name__}: {text}", False
