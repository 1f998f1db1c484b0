"""The batch job database: exclusive claims across processes, leases, retries, segments."""

from __future__ import annotations

import multiprocessing
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vapsr_video.batch.jobs_db import JobsDB, process_prefix


def add_jobs(db: JobsDB, count: int) -> None:
    for index in range(count):
        db.upsert_discovered(rel_path=f"clip{index:03d}.mp4", source=f"/src/clip{index:03d}.mp4",
                             output=f"/dst/clip{index:03d}.mp4", fingerprint=f"fp{index}", state="pending",
                             reason=None, permanent=False, input_bytes=100, duration=1.0, est_frames=10)


def _claim_everything(db_path: str, name: str, queue: multiprocessing.Queue) -> None:
    db = JobsDB(db_path)
    owner = process_prefix() + name
    claimed = []
    while (claim := db.claim(owner)) is not None:
        claimed.append(claim.job.id)
        db.finish_job(claim.job.id, owner, frames=1, seconds=0.0, output_bytes=1, run_id=None)
    queue.put(claimed)


def dead_pid() -> int:
    """The id of a process that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_concurrent_processes_never_claim_the_same_job(tmp_path: Path) -> None:
    db_path = tmp_path / "jobs.sqlite"
    with JobsDB(db_path) as db:
        add_jobs(db, 60)
    context = multiprocessing.get_context("fork")  # no re-import: the children only use SQLite
    queue = context.Queue()
    workers = [context.Process(target=_claim_everything, args=(str(db_path), f"w{i}@cpu", queue)) for i in range(3)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    everything = [job for claimed in results for job in claimed]
    assert sorted(everything) == list(range(1, 61)), "every job claimed exactly once"
    with JobsDB(db_path) as db:
        assert {job.state for job in db.jobs()} == {"done"}


def test_job_of_a_dead_process_is_reclaimed_but_a_live_ones_is_not(tmp_path: Path) -> None:
    with JobsDB(tmp_path / "jobs.sqlite") as db:
        add_jobs(db, 2)
        live_owner = f"{socket.gethostname()}:1:w1@cpu"  # pid 1 is alive
        live = db.claim(live_owner)
        dead_owner = f"{socket.gethostname()}:{dead_pid()}:w1@cpu"
        dead = db.claim(dead_owner)
        assert live is not None and dead is not None and live.job.id != dead.job.id
        mine = process_prefix() + "w1@cpu"
        again = db.claim(mine)
        assert again is not None and again.job.id == dead.job.id, "the dead owner's job is handed over"
        assert db.job(dead.job.id).interruptions == 1
        assert db.claim(mine) is None, "a live owner's job stays with it"


def test_lease_of_a_silent_owner_on_another_host_expires(tmp_path: Path) -> None:
    with JobsDB(tmp_path / "jobs.sqlite", lease_seconds=0.5) as db:
        add_jobs(db, 1)
        assert db.claim("elsewhere:123:ray1@ray") is not None
        assert db.claim(process_prefix() + "w1@cpu") is None, "the lease is still fresh"
        time.sleep(0.7)
        claim = db.claim(process_prefix() + "w1@cpu")
        assert claim is not None and claim.job.rel_path == "clip000.mp4"


def test_heartbeat_keeps_a_lease_alive(tmp_path: Path) -> None:
    with JobsDB(tmp_path / "jobs.sqlite", lease_seconds=0.6) as db:
        add_jobs(db, 1)
        # An owner name of this process, as if a worker of ours on a node whose clock we trust.
        assert db.claim(process_prefix() + "w1@cpu") is not None
        for _ in range(4):
            time.sleep(0.3)
            db.heartbeat(process_prefix())
        other = JobsDB(tmp_path / "jobs.sqlite", lease_seconds=0.6)
        assert other.claim("elsewhere:9:w1@cpu") is None
        other.close()


def test_transient_failures_back_off_then_fail(tmp_path: Path) -> None:
    with JobsDB(tmp_path / "jobs.sqlite") as db:
        add_jobs(db, 1)
        owner = process_prefix() + "w1@cpu"
        claim = db.claim(owner)
        assert db.fail(claim, owner, "out of device memory", permanent=False, max_attempts=2, backoff_seconds=0.3,
                       run_id=1)
        assert db.claim(owner) is None, "not before the backoff has passed"
        time.sleep(0.35)
        claim = db.claim(owner)
        assert claim is not None
        assert not db.fail(claim, owner, "out of device memory", permanent=False, max_attempts=2,
                           backoff_seconds=0.3, run_id=1)
        job = db.job(claim.job.id)
        assert (job.state, job.attempts, job.reason) == ("failed", 2, "out of device memory")


def test_permanent_failure_is_not_retried(tmp_path: Path) -> None:
    with JobsDB(tmp_path / "jobs.sqlite") as db:
        add_jobs(db, 1)
        owner = process_prefix() + "w1@cpu"
        claim = db.claim(owner)
        assert not db.fail(claim, owner, "bad file", permanent=True, max_attempts=5, backoff_seconds=0, run_id=1)
        assert db.job(claim.job.id).state == "failed"
        assert db.claim(owner) is None


def test_segments_spread_over_owners_and_assembly_waits_for_all(tmp_path: Path) -> None:
    with JobsDB(tmp_path / "jobs.sqlite") as db:
        add_jobs(db, 2)
        a, b = process_prefix() + "w1@cuda:0", process_prefix() + "w2@cuda:1"
        job = db.claim(a)
        assert job.kind == "job"
        db.plan_segments(job.job.id, a, [(None, 1.0), (1.0, 2.0), (2.0, None)])
        first, second = db.claim(a), db.claim(b)
        assert (first.kind, first.segment.idx, second.kind, second.segment.idx) == ("segment", 0, "segment", 1)
        db.finish_segment(job.job.id, 0, a, frames=10, seconds=1.0)
        third = db.claim(a)
        assert (third.kind, third.segment.idx) == ("segment", 2)
        other = db.claim(a)
        assert other.kind == "job" and other.job.id != job.job.id, "no assembly while segments are unfinished"
        db.finish_segment(job.job.id, 1, b, frames=10, seconds=1.0)
        db.finish_segment(job.job.id, 2, a, frames=5, seconds=0.5)
        assembly = db.claim(b)
        assert assembly.kind == "assemble" and assembly.job.id == job.job.id


def test_release_makes_work_resumable(tmp_path: Path) -> None:
    with JobsDB(tmp_path / "jobs.sqlite") as db:
        add_jobs(db, 2)
        owner = process_prefix() + "w1@cpu"
        whole = db.claim(owner)
        db.plan_segments(whole.job.id, owner, [(None, 1.0), (1.0, None)])
        segment = db.claim(owner)
        db.release(process_prefix())
        assert db.job(whole.job.id).state == "running" and db.job(whole.job.id).segmented
        assert [s.state for s in db.segments(whole.job.id)] == ["pending", "pending"]
        again = db.claim(process_prefix() + "w2@cpu")
        assert again.kind == "segment" and again.segment.idx == segment.segment.idx


@pytest.mark.parametrize("changed", [False, True])
def test_rediscovery_resets_only_changed_jobs(tmp_path: Path, changed: bool) -> None:
    with JobsDB(tmp_path / "jobs.sqlite") as db:
        add_jobs(db, 1)
        owner = process_prefix() + "w1@cpu"
        claim = db.claim(owner)
        db.finish_job(claim.job.id, owner, frames=10, seconds=1.0, output_bytes=5, run_id=1)
        if changed:
            db.upsert_discovered(rel_path="clip000.mp4", source="/src/clip000.mp4", output="/dst/clip000.mp4",
                                 fingerprint="fp-new", state="pending", reason=None, permanent=False,
                                 input_bytes=100, duration=1.0, est_frames=10)
        assert db.job(claim.job.id).state == ("pending" if changed else "done")
