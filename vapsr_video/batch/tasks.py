"""Doing one claimed unit of work: a whole file, one segment, or an assembly.

Nothing here touches the job database, so the same code runs in a local worker
thread and in a Ray actor; the caller records the outcome. Everything a unit
writes goes to its own folder under ``DST/.vapsr-batch/work/<job id>/`` and
reaches its final path by an atomic rename, so a unit that dies leaves nothing
half-written anywhere else, and its leftovers are wiped when it is redone.
A unit that fails goes back to its caller as a bare exception (:func:`forget_failure`):
only its type and message are recorded, and the device memory it held is free for the next unit.

Publishing never replaces a file it was not told it may replace: the job says
what may be at the output (nothing, the file this batch made before, or
anything with ``--overwrite``), and a file that appeared there meanwhile is left
alone and the job fails with that reason. Just before publishing, a note of the
staged file goes into the work folder, so an attempt killed between publishing
and recording it is recognised by the next one and not redone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vapsr_video.batch.jobs_db import Claim, JobRow, output_identity
from vapsr_video.batch.safety import OVERWRITE_HINT, STATE_DIR_NAME, check_publish_target
from vapsr_video.batch.segments import SegmentRange, assemble, plan_segments
from vapsr_video.choices import DEFAULT_MAX_PIXELS
from vapsr_video.errors import InputError, OutputError, UsageError, VapsrError, WeightsError
from vapsr_video.inference.cuda_support import drop_traceback, release_device_memory
from vapsr_video.safe_output import publish as publish_file

if TYPE_CHECKING:
    from vapsr_video.inference.upscaler import Upscaler
    from vapsr_video.video.encoder import EncodeOptions
    from vapsr_video.video.pipeline import VideoResult

Progress = Callable[[int], None]
log = logging.getLogger("vapsr_video.batch")
PUBLISHED_NOTE = "published.json"
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})  # EFBIG: a file size limit


class OutputAppeared(OutputError):
    """A file appeared at a job's output path while it was being made, or changed since the
    batch planned to replace it; it is never replaced without ``--overwrite``."""


class DiskFull(OutputError):
    """No space left where the batch writes: the whole batch stops, resumable."""


@dataclass(frozen=True)
class UnitSettings:
    """Everything a unit of work needs besides its model; picklable, for Ray."""

    dst: Path
    encode: EncodeOptions | None = None  # None: the pipeline's defaults
    batch_size: int = 4
    segment_seconds: float = 300.0
    state_dir: Path = field(default=Path())
    max_pixels: int = DEFAULT_MAX_PIXELS
    allow_partial: bool = False

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
    output_identity: str | None = None  # of a published job output (see ``jobs_db.output_identity``)


@dataclass(frozen=True)
class Planned:
    ranges: list[SegmentRange]


def publish(staged: Path, final: Path, *, settings: UnitSettings, job: JobRow, replace: str | None) -> int:
    """Move a complete file to its final path (creating its folder); returns its size in bytes.

    ``replace`` says what may be at ``final``: None nothing, ``"*"`` anything (``--overwrite``),
    else the identity of the one file that may be replaced (an earlier output of this batch).
    """
    check_publish_target(final, settings.dst, Path(job.source))
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _disk_full_or(exc, OutputError(f"{final}: cannot write ({exc.strerror})")) from None
    check_publish_target(final, settings.dst, Path(job.source))  # the folders now exist: resolve again
    overwrite = replace == "*"
    if not overwrite and replace is not None:
        present = output_identity(final)
        if present is not None and present != replace:
            raise OutputAppeared(f"{final}: changed since this batch made it; {OVERWRITE_HINT}")
        overwrite = present is not None
    try:
        publish_file(staged, final, overwrite=overwrite)
    except OutputError as exc:
        if not overwrite and os.path.lexists(final):
            raise OutputAppeared(f"{final}: appeared while it was being made (not from this batch); "
                                 f"{OVERWRITE_HINT}") from None
        raise _disk_full_or(exc, exc) from None
    return final.stat().st_size


def _disk_full_or(exc: BaseException, otherwise: BaseException) -> BaseException:
    return DiskFull(str(otherwise)) if is_disk_full(exc) else otherwise


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` or an error it was raised from (kept as its context) says the disk is full."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, DiskFull) or getattr(seen, "errno", None) in DISK_FULL_ERRNOS:
            return True
        text = str(seen).lower()
        if "no space left" in text or "disk is full" in text or "file too large" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _note_path(settings: UnitSettings, job: JobRow) -> Path:
    return settings.work_dir(job.id) / PUBLISHED_NOTE


def write_published_note(settings: UnitSettings, job: JobRow, staged: Path, frames: int, seconds: float) -> None:
    """Before publishing: which file is about to become the output, for which input and options."""
    stat = staged.stat()
    note = {"fingerprint": job.fingerprint, "output": job.output, "dev": stat.st_dev, "ino": stat.st_ino,
            "size": stat.st_size, "frames": frames, "seconds": seconds}
    _note_path(settings, job).write_text(json.dumps(note), encoding="utf-8")


def already_published(settings: UnitSettings, job: JobRow) -> Finished | None:
    """The outcome of an earlier attempt at this very job that published its output and then
    died before the outcome was recorded; None when there was none (the work is redone)."""
    try:
        note = json.loads(_note_path(settings, job).read_text(encoding="utf-8"))
        stat = os.stat(job.output)
    except (OSError, ValueError):
        return None
    if note.get("fingerprint") != job.fingerprint or note.get("output") != job.output:
        return None
    if (stat.st_dev, stat.st_ino, stat.st_size) != (note.get("dev"), note.get("ino"), note.get("size")):
        return None  # not the file that attempt published (a rename keeps the inode)
    return Finished(int(note["frames"]), float(note["seconds"]), stat.st_size,
                    output_identity=output_identity(job.output))


def fresh_folder(folder: Path) -> Path:
    """An empty folder: whatever a dead attempt left there is discarded."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _upscale(source: str, target: Path, upscaler: Upscaler, settings: UnitSettings, progress: Progress | None,
             **kwargs: Any) -> VideoResult:
    from vapsr_video.video.pipeline import upscale_video

    return upscale_video(source, target, upscaler, settings.encode, batch_size=settings.batch_size,
                         progress=progress, overwrite=True, max_pixels=settings.max_pixels,
                         allow_partial=settings.allow_partial, **kwargs)


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
    if (earlier := already_published(settings, job)) is not None:
        return earlier
    work = fresh_folder(settings.work_dir(job.id))
    duration = job.duration if job.duration is not None else _duration(job.source)
    if settings.segment_seconds > 0 and duration and duration > 1.5 * settings.segment_seconds:
        ranges = plan_segments(job.source, settings.segment_seconds)
        if len(ranges) > 1:
            return Planned(ranges)
    started = time.perf_counter()
    staged = work / ("output" + Path(job.output).suffix)
    result = _upscale(job.source, staged, upscaler, settings, progress)
    seconds = time.perf_counter() - started
    write_published_note(settings, job, staged, result.frames, seconds)
    size = publish(staged, Path(job.output), settings=settings, job=job, replace=job.replace_identity)
    # The work folder (with the note) stays until the outcome is recorded; cleanup removes it.
    return Finished(result.frames, seconds, size, nonfinite_pixels=result.nonfinite_pixels,
                    output_identity=output_identity(job.output))


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
    size = publish(staged, final, settings=settings, job=job, replace="*")  # our own work folder
    shutil.rmtree(scratch, ignore_errors=True)
    return Finished(result.frames, time.perf_counter() - started, size,
                    nonfinite_pixels=result.nonfinite_pixels)


def run_assembly(claim: Claim, settings: UnitSettings, segment_count: int) -> Finished:
    """Join the finished segments of a long file into its final output."""
    job = claim.job
    if (earlier := already_published(settings, job)) is not None:
        return earlier
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
    seconds = time.perf_counter() - started
    write_published_note(settings, job, staged, frames, seconds)
    size = publish(staged, Path(job.output), settings=settings, job=job, replace=job.replace_identity)
    for piece in pieces:  # the note stays until the outcome is recorded; cleanup removes the folder
        with contextlib.suppress(OSError):
            piece.unlink()
    return Finished(frames, seconds, size, output_identity=output_identity(job.output))


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
    if isinstance(exc, InputError | WeightsError | UsageError | OutputAppeared):
        return text, True
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text.lower():
        return f"out of device memory ({text})", False
    if isinstance(exc, VapsrError):
        return text, False
    return f"{type(exc).__name__}: {text}", False
