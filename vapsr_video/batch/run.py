"""A batch run: every video under SRC upscaled into the same tree under DST.

:func:`run_batch` is the whole run without a command line: reconcile the
source tree with the job database, run the units on a backend (threads on
this machine's devices, or Ray), clean up, and report. Resumable: the job
database in ``DST/.vapsr-batch/`` remembers what is done, so calling it again
after a crash, a reboot or Ctrl-C carries on where it stopped and never redoes
a finished file. :func:`plan_batch` says what a run would do, changing nothing
(it writes no file at all, not even SQLite's ``-wal``/``-shm``).

Nothing is written before the folders pass ``safety.check_folders`` (DST not
SRC, not around it, not holding its files; the job database not among the
sources). Failures of the job database (damaged, disk full) end the run with
one line; its state stays resumable.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vapsr_video.batch import safety
from vapsr_video.batch.cleanup import remove_finished_work
from vapsr_video.batch.discovery import SourceFile, walk_sources
from vapsr_video.batch.dispatch import Backend, RetryPolicy, run_units
from vapsr_video.batch.jobs_db import DEFAULT_LEASE_SECONDS, JobsDB, state_error
from vapsr_video.batch.report import BatchReport
from vapsr_video.batch.safety import STATE_DIR_NAME
from vapsr_video.batch.sync import Decision, reconcile
from vapsr_video.batch.tasks import UnitSettings
from vapsr_video.choices import DEFAULT_MAX_PIXELS
from vapsr_video.errors import ExitCode, InputError, OutputError, UsageError, raise_terminated
from vapsr_video.inference.options import ModelOptions, stable_digest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from vapsr_video.video.encoder import EncodeOptions

log = logging.getLogger("vapsr_video.batch")

DB_NAME = "jobs.sqlite"
LOG_NAME = "batch.log"
LAST_REPORT_NAME = "last-report.json"


@dataclass(frozen=True)
class BatchSettings:
    """How a batch runs, apart from the model and the encoder.

    Args:
        include, exclude: globs on the path under SRC or the bare name (``*`` crosses folders).
        output_ext: container of the outputs (default: the input's when writable, else .mkv).
        overwrite: replace outputs that exist but were not made by this batch.
        retry_failed: also retry files that failed for a reason in the file itself.
        batch_size: frames per forward pass.
        segment_seconds: files longer than 1.5 x this go in segments of about this length (0: never).
        max_attempts, retry_backoff: tries per file for passing failures; seconds before the
            first retry, doubled each time.
        db_path: the job database (default ``DST/.vapsr-batch/jobs.sqlite``; keep it on a local disk).
        lease_seconds: a worker silent this long on another machine is presumed dead.
        quiet: no progress bars.
        max_pixels, allow_partial: the input limits of ``upscale_video`` (a truncated input fails
            unless ``allow_partial``; a file that already failed so needs ``retry_failed`` too).
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    output_ext: str | None = None
    overwrite: bool = False
    retry_failed: bool = False
    batch_size: int = 4
    segment_seconds: float = 300.0
    max_attempts: int = 3
    retry_backoff: float = 5.0
    db_path: Path | None = None
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    quiet: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    allow_partial: bool = False

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise UsageError("--max-attempts must be at least 1")
        safety.check_output_extension(self.output_ext)


def options_digest(model: ModelOptions, encode: EncodeOptions, output_ext: str | None) -> str:
    """A short hash of every option that changes the output: changing one redoes the files."""
    return stable_digest({**model.identity(), "output_ext": output_ext, "encode": asdict(encode)})


def check_folders(src: Path, dst: Path, db_path: Path | None = None) -> None:
    """SRC is a folder, and nothing the batch writes can land on a source (see ``safety``)."""
    if not src.is_dir():
        raise InputError(f"{src}: not a folder")
    safety.check_folders(src, dst, db_path)


def _sources(src: Path, dst: Path, settings: BatchSettings) -> Iterator[SourceFile]:
    return walk_sources(src, dst, include=settings.include, exclude=settings.exclude,
                        output_extension=settings.output_ext)


def _db_path(dst: Path, settings: BatchSettings) -> Path:
    return settings.db_path or dst / STATE_DIR_NAME / DB_NAME


def plan_batch(src: Path, dst: Path, model: ModelOptions, encode: EncodeOptions,
               settings: BatchSettings) -> list[Decision]:
    """What :func:`run_batch` would do with each file under ``src``; writes nothing."""
    db_path = _db_path(dst, settings)
    check_folders(src, dst, db_path)
    digest = options_digest(model, encode, settings.output_ext)
    db = JobsDB(db_path, readonly=True) if db_path.exists() else None
    try:
        return reconcile(db, _sources(src, dst, settings), digest, overwrite=settings.overwrite,
                         retry_failed=settings.retry_failed, record=False, dst=dst)
    except sqlite3.Error as exc:
        raise state_error(db_path, exc) from None
    finally:
        if db is not None:
            db.close()


def run_batch(src: Path, dst: Path, model: ModelOptions, encode: EncodeOptions, settings: BatchSettings,
              backend: Backend) -> BatchReport:
    """Upscale every video under ``src`` into ``dst`` on ``backend``; the report says what
    became of each file (its ``exit_code``: 0 all done or skipped, 1 a failure, 130
    interrupted). Ctrl-C and SIGTERM stop the run cleanly: it resumes next time."""
    db_path = _db_path(dst, settings)
    check_folders(src, dst, db_path)
    model = model.with_weights_pinned()  # workers elsewhere load the file this process resolved
    digest = options_digest(model, encode, settings.output_ext)
    state_dir = dst / STATE_DIR_NAME
    sources = _sources(src, dst, settings)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{dst}: cannot create the destination ({exc.strerror})") from None
    try:
        return _run(src, dst, model, encode, settings, backend, digest, db_path, sources)
    except sqlite3.Error as exc:
        raise state_error(db_path, exc) from None


def _run(src: Path, dst: Path, model: ModelOptions, encode: EncodeOptions, settings: BatchSettings,
         backend: Backend, digest: str, db_path: Path, sources: Iterator[SourceFile]) -> BatchReport:
    state_dir = dst / STATE_DIR_NAME
    log_handler = _log_to_file(state_dir / LOG_NAME)
    in_main_thread = threading.current_thread() is threading.main_thread()
    # The command line installs one signal policy for every command (cli/main.py); a program that
    # calls run_batch itself and left SIGTERM alone gets the same clean, resumable stop.
    previous_sigterm = signal.signal(signal.SIGTERM, raise_terminated) \
        if sys.platform != "win32" and in_main_thread and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL \
        else None
    started = time.perf_counter()
    db: JobsDB | None = None
    interrupted = False
    stop_code = ExitCode.INTERRUPTED
    try:
        db = JobsDB(db_path, lease_seconds=settings.lease_seconds)
        run_id = db.start_run()
        log.info("batch run %d: %s -> %s (pid %s)", run_id, safety.printable(str(src)), safety.printable(str(dst)),
                 os.getpid())
        decisions = reconcile(db, sources, digest, overwrite=settings.overwrite, retry_failed=settings.retry_failed,
                              run_id=run_id, dst=dst)
        unit_settings = UnitSettings(dst=dst, encode=encode, batch_size=settings.batch_size,
                                     max_pixels=settings.max_pixels, allow_partial=settings.allow_partial,
                                     segment_seconds=settings.segment_seconds, state_dir=state_dir)
        policy = RetryPolicy(max_attempts=settings.max_attempts, backoff_seconds=settings.retry_backoff)
        wanted = {decision.source.rel_path for decision in decisions}
        todo = [job for job in db.jobs() if job.rel_path in wanted and job.state in ("pending", "running")]
        try:
            if todo:
                run_units(backend, model, unit_settings, db_path=db_path, todo=todo, policy=policy, run_id=run_id,
                          lease_seconds=settings.lease_seconds, quiet=settings.quiet, options_digest=digest)
        except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM/SIGHUP as errors.Terminated
            interrupted = True
            stop_code = getattr(stop, "exit_code", ExitCode.INTERRUPTED)
        remove_finished_work(db, unit_settings)
        jobs = [job for job in db.jobs() if job.rel_path in wanted]
        report = BatchReport.from_jobs(jobs, source=str(src), destination=str(dst), run_id=run_id,
                                       wall_seconds=time.perf_counter() - started, interrupted=interrupted,
                                       stop_code=stop_code)
        report.write(state_dir / LAST_REPORT_NAME)
        db.finish_run(run_id, "interrupted" if interrupted else ("failed" if report.exit_code else "ok"))
        log.info("batch run %d finished: %s", run_id, json.dumps(report.totals))
        return report
    finally:
        if db is not None:
            db.close()
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
        logging.getLogger().removeHandler(log_handler)
        log_handler.close()


class _BatchLogHandler(logging.FileHandler):
    """The batch log: a line that cannot be written (disk full) is dropped, not printed with a
    traceback; the run itself reports the problem that matters in one line."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


def _log_to_file(path: Path) -> logging.Handler:
    try:
        handler = _BatchLogHandler(path, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the batch log ({exc.strerror})") from None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s pid %(process)d %(threadName)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return handler
