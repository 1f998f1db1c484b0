"""The one claim / execute / record loop of a batch, whatever runs the units.

The loop alone opens the job database: for every idle worker it claims a unit
(a file, a segment or an assembly), hands it to the backend, and records what
comes back. A backend only runs units on its workers: threads on this machine's
devices (``local_backend.py``) or Ray actors (``ray_backend.py``). Another
backend is one more file implementing :class:`Backend`.

Ctrl-C (or SIGTERM, which the runner turns into it) makes the backend stop its
units in flight; every claim of this process then goes back to the queue, so a
rerun resumes there. A full disk stops the batch the same way (every file would
fail for the same reason) and ends in one :class:`OutputError` line.

A run claims only units whose job asks for the options it encodes with, and a
job is recorded done only if it still asks for the input and options the
finished attempt used: two runs with different options on one DST can never
leave an output labelled with options it was not made with.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol

from vapsr_video.batch.jobs_db import Claim, JobRow, JobsDB, process_prefix
from vapsr_video.batch.progress import BatchProgress
from vapsr_video.batch.safety import printable
from vapsr_video.batch.tasks import Finished, Planned, UnitSettings, classify_error, discard_work, is_disk_full
from vapsr_video.errors import OutputError, UsageError
from vapsr_video.inference.options import ModelOptions

log = logging.getLogger("vapsr_video.batch")
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    backoff_seconds: float = 5.0


@dataclass(frozen=True)
class Worker:
    """One slot that runs a unit at a time. ``process prefix + name`` owns its claims
    in the database; ``device`` is recorded with them."""

    name: str
    device: str


@dataclass(frozen=True)
class Unit:
    claim: Claim
    segment_count: int  # for an assembly: how many segments to join; else 0


class _DiskFullStop(Exception):
    """Raised inside the loop when a unit ran out of disk space: stop like Ctrl-C, then report."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class WorkerLost(Exception):
    """The worker (or its machine) died with the unit in flight: the unit goes back to the queue."""


@dataclass(frozen=True)
class Done:
    """A unit's end: its outcome, the exception it raised, or :class:`WorkerLost`."""

    worker: str
    outcome: Finished | Planned | BaseException


class Backend(Protocol):
    """What runs units. Its methods are called from the loop's thread only."""

    # True when the backend reports frames while a unit runs (through the callback
    # given to ``submit``); otherwise the loop counts a unit's frames when it ends.
    reports_frames: bool

    def start(self, model: ModelOptions, settings: UnitSettings) -> list[Worker]:
        """Load one model per worker, before any unit is claimed (bad weights fail here)."""
        ...

    def workers(self) -> list[Worker]:
        """The workers still able to take units (a backend may lose some)."""
        ...

    def submit(self, worker: str, unit: Unit, frames_done: Callable[[int], None]) -> None:
        """Start ``unit`` on the idle ``worker``; return at once."""
        ...

    def wait(self, timeout: float) -> list[Done]:
        """The units that ended, waiting up to ``timeout`` seconds for the first."""
        ...

    def cancel(self) -> None:
        """Stop the units in flight (Ctrl-C); return once none is running."""
        ...

    def close(self) -> None:
        """Release the workers and whatever else the backend holds."""
        ...


def describe(claim: Claim) -> str:
    """The unit for the log and the progress lines (control characters in the name escaped)."""
    name = printable(claim.job.rel_path)
    if claim.kind == "segment" and claim.segment is not None:
        return f"{name} [segment {claim.segment.idx + 1}]"
    if claim.kind == "assemble":
        return f"{name} [assembling]"
    return name


def record_success(db: JobsDB, settings: UnitSettings, claim: Claim, owner: str, outcome: Finished | Planned, *,
                   run_id: int, ui: BatchProgress) -> None:
    job = claim.job
    name = printable(job.rel_path)
    if isinstance(outcome, Planned):
        db.plan_segments(job.id, owner, outcome.ranges)
        log.info("%s: long file, planned %d segments", name, len(outcome.ranges))
        return
    if outcome.nonfinite_pixels:
        log.warning("%s: the model gave NaN or infinity for %d output pixel(s), replaced before encoding "
                    "(usually fp16 overflow: try --precision fp32 or bf16)", describe(claim), outcome.nonfinite_pixels)
    if claim.kind == "segment" and claim.segment is not None:
        db.finish_segment(job.id, claim.segment.idx, owner, frames=outcome.frames, seconds=outcome.seconds)
        log.info("%s: segment %d done (%d frames, %.1f s)", name, claim.segment.idx, outcome.frames,
                 outcome.seconds)
        return
    seconds = outcome.seconds
    if claim.kind == "assemble":
        seconds += sum(segment.work_seconds or 0.0 for segment in db.segments(job.id))
    recorded = db.finish_job(job.id, owner, frames=outcome.frames, seconds=seconds,
                             output_bytes=outcome.output_bytes, run_id=run_id, fingerprint=job.fingerprint,
                             output_identity=outcome.output_identity)
    ui.file_finished()
    if not recorded:
        log.warning("%s: finished, but its input or options changed meanwhile; it will be redone", name)
        return
    discard_work(settings, job.id)
    if claim.kind == "job" and job.est_frames is not None:
        ui.add_frames_total(outcome.frames - job.est_frames)
    log.info("done %s -> %s (%d frames, %.1f s, %d bytes)", name, printable(job.output), outcome.frames, seconds,
             outcome.output_bytes)


def record_failure(db: JobsDB, settings: UnitSettings, claim: Claim, owner: str, exc: BaseException, *,
                   run_id: int, policy: RetryPolicy, ui: BatchProgress) -> None:
    reason, permanent = classify_error(exc)
    retry = db.fail(claim, owner, reason, permanent=permanent, max_attempts=policy.max_attempts,
                    backoff_seconds=policy.backoff_seconds, run_id=run_id)
    if retry:
        log.warning("%s: %s; will retry", describe(claim), printable(reason))
        return
    discard_work(settings, claim.job.id)
    ui.file_finished()
    log.error("failed %s: %s", printable(claim.job.rel_path), printable(reason))


class Heartbeat(threading.Thread):
    """Keeps this process's leases fresh while it lives."""

    def __init__(self, db_path: Path, lease_seconds: float, stop: threading.Event) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self.db_path = db_path
        self.interval = max(0.5, lease_seconds / 6)
        self.lease_seconds = lease_seconds
        self.stop = stop

    def run(self) -> None:
        with JobsDB(self.db_path, lease_seconds=self.lease_seconds, check=False) as db:
            prefix = process_prefix()
            while not self.stop.wait(self.interval):
                try:
                    db.heartbeat(prefix)
                except Exception as exc:  # a locked database for a minute: try again next beat
                    log.warning("heartbeat failed: %s", exc)


def run_units(backend: Backend, model: ModelOptions, settings: UnitSettings, *, db_path: Path, todo: list[JobRow],
              policy: RetryPolicy, run_id: int, lease_seconds: float, quiet: bool,
              options_digest: str | None = None) -> None:
    """Run every claimable unit (of jobs asking for ``options_digest``) on ``backend`` until
    no work is left for this process; Ctrl-C stops the units in flight, gives their claims
    back and re-raises; a full disk does the same and raises :class:`OutputError`."""
    try:
        workers = backend.start(model, settings)
    except BaseException:
        backend.close()
        raise
    ui = BatchProgress(total_frames=sum(job.est_frames or 0 for job in todo), total_files=len(todo),
                       workers=[worker.name for worker in workers], quiet=quiet)
    heartbeat_stop = threading.Event()
    heartbeat = Heartbeat(db_path, lease_seconds, heartbeat_stop)
    heartbeat.start()
    prefix = process_prefix()
    db = JobsDB(db_path, lease_seconds=lease_seconds, check=False)  # the caller opened and checked it
    in_flight: dict[str, Claim] = {}
    try:
        while True:
            for worker in backend.workers():
                if worker.name in in_flight:
                    continue
                claim = db.claim(prefix + worker.name, device=worker.device, options_digest=options_digest)
                if claim is None:
                    break
                segment_count = len(db.segments(claim.job.id)) if claim.kind == "assemble" else 0
                expected = claim.job.est_frames if claim.kind == "job" and backend.reports_frames else None
                ui.started(worker.name, describe(claim), expected)
                log.info("%s on %s: %s", worker.name, worker.device, describe(claim))
                in_flight[worker.name] = claim
                backend.submit(worker.name, Unit(claim, segment_count), partial(ui.frames, worker.name))
            if not in_flight:
                if not db.has_open_work(prefix, options_digest):
                    return
                time.sleep(POLL_SECONDS)  # the rest is in backoff or in other processes' hands
                continue
            for done in backend.wait(POLL_SECONDS):
                claim = in_flight.pop(done.worker)
                owner = prefix + done.worker
                ui.idle(done.worker)
                if isinstance(done.outcome, WorkerLost):
                    log.warning("%s died during %s (%s); handing it to another worker", done.worker,
                                describe(claim), done.outcome)
                    db.release_claim(claim, owner)
                elif isinstance(done.outcome, BaseException) and is_disk_full(done.outcome):
                    log.error("%s: %s; stopping the batch", describe(claim), printable(str(done.outcome)))
                    raise _DiskFullStop(done.outcome)
                elif isinstance(done.outcome, BaseException):
                    record_failure(db, settings, claim, owner, done.outcome, run_id=run_id, policy=policy, ui=ui)
                else:
                    if not backend.reports_frames and isinstance(done.outcome, Finished):
                        ui.frames(done.worker, done.outcome.frames if claim.kind != "assemble" else 0)
                    record_success(db, settings, claim, owner, done.outcome, run_id=run_id, ui=ui)
            if not backend.workers():
                raise UsageError("every batch worker died (on Ray: see the Ray logs)")
    except (KeyboardInterrupt, _DiskFullStop) as stop:
        backend.cancel()
        for done in backend.wait(0):
            # A unit that completed while the others stopped is kept; failures now may be the stop itself.
            if isinstance(done.outcome, Finished | Planned) and done.worker in in_flight:
                record_success(db, settings, in_flight[done.worker], prefix + done.worker, done.outcome,
                               run_id=run_id, ui=ui)
        if isinstance(stop, _DiskFullStop):
            raise OutputError(f"{settings.dst}: no space left on the device ({' '.join(str(stop.cause).split())}); "
                              "free some space and run the same command again to resume") from None
        raise
    finally:
        try:
            db.release(prefix)  # on a full disk this may fail too: the next run reclaims them as a dead owner's
        except Exception as exc:
            log.warning("could not give back this run's claims: %s", exc)
        db.close()
        heartbeat_stop.set()
        heartbeat.join()
        ui.close()
        backend.close()
