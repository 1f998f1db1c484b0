"""Local workers: one thread per device, each with its own model, pulling work from
the job database until nothing is left.

Threads (not processes) because the heavy parts (decoding, the network, encoding)
release the GIL, a kill -9 of the batch takes every worker with it (no orphan
keeps a lease alive), and Ctrl-C reaches one place that stops them all.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from vapsr_video.batch.jobs_db import Claim, JobsDB, process_prefix
from vapsr_video.batch.progress import BatchProgress
from vapsr_video.batch.tasks import (
    BatchSettings,
    Finished,
    Planned,
    classify_error,
    discard_work,
    run_assembly,
    run_job,
    run_segment,
)
from vapsr_video.errors import UsageError

log = logging.getLogger("vapsr_video.batch")
POLL_SECONDS = 0.5


class Cancelled(Exception):
    """Raised from a progress callback to stop the unit in flight (Ctrl-C, SIGTERM)."""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    backoff_seconds: float = 5.0


def parse_devices(text: str | None, fallback_device: str | None = None) -> list[str]:
    """``cuda:0,cuda:1``, ``cuda`` (all visible GPUs), ``cpu`` or ``cpu,cpu`` (two CPU
    workers); default: every visible GPU, else one CPU worker."""
    if not text:
        if fallback_device:
            text = fallback_device
        elif torch.cuda.is_available():
            return [f"cuda:{index}" for index in range(torch.cuda.device_count())]
        else:
            return ["cpu"]
    devices: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if count == 0:
                raise UsageError("--devices cuda: no CUDA device is visible on this machine")
            devices.extend(f"cuda:{index}" for index in range(count))
        elif item == "cpu" or item.startswith("cuda:"):
            devices.append(item)
        else:
            raise UsageError(f"unknown device {item!r} in --devices; use cpu, cuda or cuda:N")
    if not devices:
        raise UsageError("--devices names no device")
    return devices


def share_cpu_threads(devices: list[str]) -> None:
    """Several CPU workers split the cores instead of all using every core."""
    cpu_workers = sum(1 for device in devices if device == "cpu")
    if cpu_workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // cpu_workers))


def execute(claim: Claim, settings: BatchSettings, upscaler: object, segment_count: int,
            progress: Callable[[int], None] | None) -> Finished | Planned:
    """Run one claimed unit (no database access): the same code locally and on Ray."""
    if claim.kind == "segment":
        return run_segment(claim, settings, upscaler, progress)
    if claim.kind == "assemble":
        return run_assembly(claim, settings, segment_count)
    return run_job(claim, settings, upscaler, progress)


def describe(claim: Claim) -> str:
    if claim.kind == "segment" and claim.segment is not None:
        return f"{claim.job.rel_path} [segment {claim.segment.idx + 1}]"
    if claim.kind == "assemble":
        return f"{claim.job.rel_path} [assembling]"
    return claim.job.rel_path


def record_success(db: JobsDB, claim: Claim, owner: str, outcome: Finished | Planned, *, run_id: int,
                   ui: BatchProgress | None = None) -> None:
    job = claim.job
    if isinstance(outcome, Planned):
        db.plan_segments(job.id, owner, outcome.ranges)
        log.info("%s: long file, planned %d segments", job.rel_path, len(outcome.ranges))
        return
    if claim.kind == "segment" and claim.segment is not None:
        db.finish_segment(job.id, claim.segment.idx, owner, frames=outcome.frames, seconds=outcome.seconds)
        log.info("%s: segment %d done (%d frames, %.1f s)", job.rel_path, claim.segment.idx, outcome.frames,
                 outcome.seconds)
        return
    seconds = outcome.seconds
    if claim.kind == "assemble":
        seconds += sum(segment.work_seconds or 0.0 for segment in db.segments(job.id))
    db.finish_job(job.id, owner, frames=outcome.frames, seconds=seconds, output_bytes=outcome.output_bytes,
                  run_id=run_id)
    if ui is not None:
        ui.file_finished()
        if claim.kind == "job" and job.est_frames is not None:
            ui.add_frames_total(outcome.frames - job.est_frames)
    log.info("done %s -> %s (%d frames, %.1f s, %d bytes)", job.rel_path, job.output, outcome.frames, seconds,
             outcome.output_bytes)


def record_failure(db: JobsDB, settings: BatchSettings, claim: Claim, owner: str, exc: BaseException, *,
                   run_id: int, policy: RetryPolicy, ui: BatchProgress | None = None) -> None:
    reason, permanent, _transient = classify_error(exc)
    retry = db.fail(claim, owner, reason, permanent=permanent, max_attempts=policy.max_attempts,
                    backoff_seconds=policy.backoff_seconds, run_id=run_id)
    if retry:
        log.warning("%s: %s; will retry", describe(claim), reason)
        return
    discard_work(settings, claim.job.id)
    if ui is not None:
        ui.file_finished()
    log.error("failed %s: %s", claim.job.rel_path, reason)


class LocalWorker(threading.Thread):
    def __init__(self, name: str, device: str, upscaler: object, *, db_path: Path, settings: BatchSettings,
                 policy: RetryPolicy, run_id: int, ui: BatchProgress, stop: threading.Event,
                 lease_seconds: float) -> None:
        super().__init__(name=name, daemon=True)
        self.device = device
        self.upscaler = upscaler
        self.db_path = db_path
        self.settings = settings
        self.policy = policy
        self.run_id = run_id
        self.ui = ui
        self.stop = stop
        self.lease_seconds = lease_seconds
        self.owner = process_prefix() + name
        self.error: BaseException | None = None
        # Waited on instead of join(): a Ctrl-C landing inside Thread.join() can mark a live
        # thread as finished (CPython bpo-45274 handling), and the stop would not wait for it.
        self.finished = threading.Event()

    def _progress(self, count: int) -> None:
        if self.stop.is_set():
            raise Cancelled
        self.ui.frames(self.name, count)

    def run(self) -> None:
        try:
            with JobsDB(self.db_path, lease_seconds=self.lease_seconds) as db:
                self._loop(db)
        except BaseException as exc:  # surfaced by the pool: a worker must not die silently
            self.error = exc
            self.stop.set()
        finally:
            self.finished.set()

    def _loop(self, db: JobsDB) -> None:
        while not self.stop.is_set():
            claim = db.claim(self.owner, device=self.device)
            if claim is None:
                if not db.has_open_work(process_prefix()):
                    return
                self.ui.idle(self.name)
                self.stop.wait(POLL_SECONDS)
                continue
            total = claim.job.est_frames if claim.kind == "job" else None
            self.ui.started(self.name, describe(claim), total)
            log.info("%s on %s: %s", self.name, self.device, describe(claim))
            segment_count = len(db.segments(claim.job.id)) if claim.kind == "assemble" else 0
            try:
                outcome = execute(claim, self.settings, self.upscaler, segment_count, self._progress)
            except Cancelled:
                db.release(self.owner)
                return
            except Exception as exc:
                if self.stop.is_set():
                    db.release(self.owner)  # the failure may be the interruption itself
                    return
                record_failure(db, self.settings, claim, self.owner, exc, run_id=self.run_id, policy=self.policy,
                               ui=self.ui)
                continue
            record_success(db, claim, self.owner, outcome, run_id=self.run_id, ui=self.ui)
        db.release(self.owner)


class Heartbeat(threading.Thread):
    """Keeps this process's leases fresh while it lives."""

    def __init__(self, db_path: Path, lease_seconds: float, stop: threading.Event) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self.db_path = db_path
        self.interval = max(0.5, lease_seconds / 6)
        self.lease_seconds = lease_seconds
        self.stop = stop

    def run(self) -> None:
        with JobsDB(self.db_path, lease_seconds=self.lease_seconds) as db:
            prefix = process_prefix()
            while not self.stop.wait(self.interval):
                try:
                    db.heartbeat(prefix)
                except Exception as exc:  # a locked database for a minute: try again next beat
                    log.warning("heartbeat failed: %s", exc)


def run_local(upscalers: dict[str, object], *, db_path: Path, settings: BatchSettings, policy: RetryPolicy,
              run_id: int, ui: BatchProgress, lease_seconds: float) -> None:
    """Run one worker per entry of ``upscalers`` (name -> loaded upscaler) until the work is
    done; Ctrl-C stops them all, gives their claims back and re-raises."""
    stop = threading.Event()
    heartbeat_stop = threading.Event()
    heartbeat = Heartbeat(db_path, lease_seconds, heartbeat_stop)
    heartbeat.start()
    workers = [
        LocalWorker(name, str(getattr(upscaler, "device", "cpu")), upscaler, db_path=db_path, settings=settings,
                    policy=policy, run_id=run_id, ui=ui, stop=stop, lease_seconds=lease_seconds)
        for name, upscaler in upscalers.items()
    ]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            while not worker.finished.wait(timeout=0.2):
                pass
    except KeyboardInterrupt:
        stop.set()
        for worker in workers:
            worker.finished.wait()
        raise
    finally:
        heartbeat_stop.set()
        heartbeat.join()
    errors = [worker.error for worker in workers if worker.error is not None]
    if errors:
        raise errors[0]
