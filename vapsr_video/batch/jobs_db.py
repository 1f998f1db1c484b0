"""The batch job database: one SQLite file (WAL mode) with one row per input file.

Every change of state is a short ``BEGIN IMMEDIATE`` transaction, so several
batch processes on the same destination (and, in each, the dispatch loop and
the heartbeat thread) can share it: a claim selects and marks a row inside one
write-locked transaction, and no two owners ever hold the same job or segment.

An owner is ``host:pid:worker``. Its rows carry a heartbeat that a thread of
the owning process refreshes; a row whose owner is a dead process on this host,
or whose heartbeat is older than the lease, is handed back (a kill -9 or a
power loss therefore costs only the work in flight).

SQLite must not live on a network file system; workers never open it, only the
process that runs the batch (on Ray, the driver).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from vapsr_video.errors import OutputError

DEFAULT_LEASE_SECONDS = 120.0
# A job whose worker died this many times is probably what kills it (a decoder crash).
MAX_INTERRUPTIONS = 8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    rel_path TEXT UNIQUE NOT NULL,
    source TEXT NOT NULL,
    output TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    permanent INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    interruptions INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    owner TEXT,
    heartbeat REAL,
    segmented INTEGER NOT NULL DEFAULT 0,
    input_bytes INTEGER,
    duration REAL,
    est_frames INTEGER,
    frames INTEGER,
    work_seconds REAL,
    output_bytes INTEGER,
    started REAL,
    finished REAL,
    run_id INTEGER
);
CREATE TABLE IF NOT EXISTS segments (
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    start REAL,
    end REAL,
    state TEXT NOT NULL,
    owner TEXT,
    heartbeat REAL,
    device TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    frames INTEGER,
    work_seconds REAL,
    started REAL,
    finished REAL,
    PRIMARY KEY (job_id, idx)
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    host TEXT,
    pid INTEGER,
    started REAL,
    finished REAL,
    outcome TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS segments_state ON segments(state);
"""


def process_prefix() -> str:
    """``host:pid:``, the part of an owner name that identifies this process."""
    return f"{socket.gethostname()}:{os.getpid()}:"


def owner_is_dead_here(owner: str) -> bool:
    """True when ``owner`` is a process of this host that no longer exists."""
    host, _, rest = owner.partition(":")
    if host != socket.gethostname():
        return False
    pid_text = rest.split(":", 1)[0]
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass(frozen=True)
class JobRow:
    id: int
    rel_path: str
    source: str
    output: str
    fingerprint: str
    state: str
    reason: str | None
    permanent: bool
    attempts: int
    interruptions: int
    segmented: bool
    owner: str | None
    input_bytes: int | None
    duration: float | None
    est_frames: int | None
    frames: int | None
    work_seconds: float | None
    output_bytes: int | None
    started: float | None
    finished: float | None
    run_id: int | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> JobRow:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class SegmentRow:
    job_id: int
    idx: int
    start: float | None
    end: float | None
    state: str
    owner: str | None
    device: str | None
    attempts: int
    frames: int | None
    work_seconds: float | None
    started: float | None
    finished: float | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> SegmentRow:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Claim:
    """A unit of work handed to one owner: a whole job, one segment, or an assembly."""

    kind: str  # "job", "segment" or "assemble"
    job: JobRow
    segment: SegmentRow | None = None


class JobsDB:
    """The job database of one destination folder. One instance per thread."""

    def __init__(self, path: str | Path, *, lease_seconds: float = DEFAULT_LEASE_SECONDS,
                 readonly: bool = False) -> None:
        self.path = Path(path)
        self.lease_seconds = lease_seconds
        try:
            if readonly:
                self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=60,
                                             isolation_level=None, check_same_thread=False)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(self.path, timeout=60, isolation_level=None,
                                             check_same_thread=False)
        except (sqlite3.Error, OSError) as exc:
            raise OutputError(f"{self.path}: cannot open the job database ({exc})") from None
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA busy_timeout = 60000")
        if not readonly:
            # WAL: readers never block the writer; synchronous=FULL: a committed state
            # change survives a power loss (the outputs it points at are fsynced too).
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> JobsDB:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the database lock at once (no upgrade deadlocks)."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # ---- runs ---------------------------------------------------------------------

    def start_run(self) -> int:
        with self.transaction() as db:
            cursor = db.execute("INSERT INTO runs (host, pid, started) VALUES (?, ?, ?)",
                                (socket.gethostname(), os.getpid(), time.time()))
            return int(cursor.lastrowid or 0)

    def finish_run(self, run_id: int, outcome: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE runs SET finished = ?, outcome = ? WHERE id = ?", (time.time(), outcome, run_id))

    # ---- reading --------------------------------------------------------------------

    def job(self, job_id: int) -> JobRow:
        row = self._conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return JobRow.from_row(row)

    def job_by_path(self, rel_path: str) -> JobRow | None:
        row = self._conn.execute("SELECT * FROM jobs WHERE rel_path = ?", (rel_path,)).fetchone()
        return JobRow.from_row(row) if row else None

    def jobs(self) -> list[JobRow]:
        return [JobRow.from_row(row) for row in self._conn.execute("SELECT * FROM jobs ORDER BY id")]

    def segments(self, job_id: int) -> list[SegmentRow]:
        rows = self._conn.execute("SELECT * FROM segments WHERE job_id = ? ORDER BY idx", (job_id,))
        return [SegmentRow.from_row(row) for row in rows]

    def has_open_work(self, owner_prefix: str) -> bool:
        """Whether waiting may still yield work for ``owner_prefix``'s workers: something
        pending (maybe in backoff), or running under this process (it may add segments)."""
        like = owner_prefix + "%"
        query = """
            SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 'pending')
                OR EXISTS (SELECT 1 FROM segments s JOIN jobs j ON j.id = s.job_id
                           WHERE s.state = 'pending' AND j.state = 'running')
                OR EXISTS (SELECT 1 FROM jobs WHERE state = 'running' AND owner LIKE ?)
                OR EXISTS (SELECT 1 FROM segments WHERE state = 'running' AND owner LIKE ?)
                OR EXISTS (SELECT 1 FROM jobs j WHERE state = 'running' AND segmented = 1 AND owner IS NULL
                           AND NOT EXISTS (SELECT 1 FROM segments s WHERE s.job_id = j.id AND s.state != 'done'))
        """
        return bool(self._conn.execute(query, (like, like)).fetchone()[0])

    # ---- discovery ----------------------------------------------------------------

    def upsert_discovered(self, *, rel_path: str, source: str, output: str, fingerprint: str, state: str,
                          reason: str | None, permanent: bool, input_bytes: int, duration: float | None,
                          est_frames: int | None, run_id: int | None = None) -> None:
        """Record what discovery found for one input (the rules are in ``batch/sync.py``)."""
        with self.transaction() as db:
            row = db.execute("SELECT * FROM jobs WHERE rel_path = ?", (rel_path,)).fetchone()
            if row is None:
                db.execute(
                    """INSERT INTO jobs (rel_path, source, output, fingerprint, state, reason, permanent,
                       input_bytes, duration, est_frames, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (rel_path, source, output, fingerprint, state, reason, int(permanent), input_bytes,
                     duration, est_frames, run_id))
                return
            if row["state"] == "running" and row["owner"] and not self._owner_dead(row["owner"], row["heartbeat"]):
                return  # another live process is on it; never pull a job from under it
            db.execute("DELETE FROM segments WHERE job_id = ?", (row["id"],))
            db.execute(
                """UPDATE jobs SET source = ?, output = ?, fingerprint = ?, state = ?, reason = ?, permanent = ?,
                   attempts = 0, interruptions = 0, not_before = 0, owner = NULL, heartbeat = NULL,
                   segmented = 0, input_bytes = ?, duration = ?, est_frames = ?, frames = NULL,
                   work_seconds = NULL, output_bytes = NULL, started = NULL, finished = NULL, run_id = ?
                   WHERE id = ?""",
                (source, output, fingerprint, state, reason, int(permanent), input_bytes, duration, est_frames,
                 run_id, row["id"]))

    # ---- leases -------------------------------------------------------------------

    def _owner_dead(self, owner: str, heartbeat: float | None, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return owner_is_dead_here(owner) or heartbeat is None or heartbeat < now - self.lease_seconds

    def heartbeat(self, owner_prefix: str) -> None:
        """Refresh the lease of every row owned by this process."""
        like = owner_prefix + "%"
        now = time.time()
        with self.transaction() as db:
            db.execute("UPDATE jobs SET heartbeat = ? WHERE state = 'running' AND owner LIKE ?", (now, like))
            db.execute("UPDATE segments SET heartbeat = ? WHERE state = 'running' AND owner LIKE ?", (now, like))

    def _reclaim_stale(self, db: sqlite3.Connection, now: float) -> None:
        for row in db.execute("SELECT id, owner, heartbeat, segmented, interruptions FROM jobs "
                              "WHERE state = 'running' AND owner IS NOT NULL").fetchall():
            if not self._owner_dead(row["owner"], row["heartbeat"], now):
                continue
            if row["segmented"]:
                # Planned into segments: the finished ones stay; only the assembly is free again.
                db.execute("UPDATE jobs SET owner = NULL, heartbeat = NULL WHERE id = ?", (row["id"],))
            elif row["interruptions"] + 1 >= MAX_INTERRUPTIONS:
                db.execute("UPDATE jobs SET state = 'failed', owner = NULL, permanent = 0, reason = ? "
                           "WHERE id = ?", (f"the worker died {MAX_INTERRUPTIONS} times on this file", row["id"]))
            else:
                db.execute("UPDATE jobs SET state = 'pending', owner = NULL, heartbeat = NULL, "
                           "interruptions = interruptions + 1 WHERE id = ?", (row["id"],))
        for row in db.execute("SELECT job_id, idx, owner, heartbeat FROM segments "
                              "WHERE state = 'running'").fetchall():
            if self._owner_dead(row["owner"], row["heartbeat"], now):
                db.execute("UPDATE segments SET state = 'pending', owner = NULL, heartbeat = NULL "
                           "WHERE job_id = ? AND idx = ?", (row["job_id"], row["idx"]))
                db.execute("UPDATE jobs SET interruptions = interruptions + 1 WHERE id = ?", (row["job_id"],))

    def release(self, owner_prefix: str) -> None:
        """Give back everything this process holds (a clean stop): it is resumed later."""
        like = owner_prefix + "%"
        with self.transaction() as db:
            db.execute("UPDATE jobs SET owner = NULL, heartbeat = NULL WHERE state = 'running' AND segmented = 1 "
                       "AND owner LIKE ?", (like,))
            db.execute("UPDATE jobs SET state = 'pending', owner = NULL, heartbeat = NULL WHERE state = 'running' "
                       "AND owner LIKE ?", (like,))
            db.execute("UPDATE segments SET state = 'pending', owner = NULL, heartbeat = NULL "
                       "WHERE state = 'running' AND owner LIKE ?", (like,))

    def release_claim(self, claim: Claim, owner: str) -> None:
        """Hand one claim back because its worker died under it (Ray): it counts as an interruption."""
        with self.transaction() as db:
            if claim.kind == "segment" and claim.segment is not None:
                db.execute("UPDATE segments SET state = 'pending', owner = NULL WHERE job_id = ? AND idx = ? "
                           "AND owner = ?", (claim.job.id, claim.segment.idx, owner))
            elif claim.kind == "assemble":
                db.execute("UPDATE jobs SET owner = NULL WHERE id = ? AND owner = ?", (claim.job.id, owner))
            else:
                db.execute("UPDATE jobs SET state = 'pending', owner = NULL WHERE id = ? AND owner = ? "
                           "AND segmented = 0", (claim.job.id, owner))
                db.execute("UPDATE jobs SET owner = NULL WHERE id = ? AND owner = ?", (claim.job.id, owner))
            db.execute("UPDATE jobs SET interruptions = interruptions + 1 WHERE id = ?", (claim.job.id,))

    # ---- claiming -----------------------------------------------------------------

    def claim(self, owner: str, *, device: str = "") -> Claim | None:
        """Atomically take the next unit of work for ``owner``, or None if nothing is ready.

        Order: segments of files already under way (so a long file spreads over
        every device and finishes first), then assemblies, then new files.
        """
        now = time.time()
        with self.transaction() as db:
            self._reclaim_stale(db, now)
            row = db.execute(
                """SELECT s.job_id, s.idx FROM segments s JOIN jobs j ON j.id = s.job_id
                   WHERE s.state = 'pending' AND j.state = 'running' AND s.not_before <= ?
                   ORDER BY j.id, s.idx LIMIT 1""", (now,)).fetchone()
            if row is not None:
                db.execute("UPDATE segments SET state = 'running', owner = ?, heartbeat = ?, started = ?, device = ? "
                           "WHERE job_id = ? AND idx = ?", (owner, now, now, device, row["job_id"], row["idx"]))
                job = JobRow.from_row(db.execute("SELECT * FROM jobs WHERE id = ?", (row["job_id"],)).fetchone())
                segment = SegmentRow.from_row(db.execute(
                    "SELECT * FROM segments WHERE job_id = ? AND idx = ?", (row["job_id"], row["idx"])).fetchone())
                return Claim("segment", job, segment)
            row = db.execute(
                """SELECT id FROM jobs j WHERE state = 'running' AND segmented = 1 AND owner IS NULL
                   AND not_before <= ?
                   AND NOT EXISTS (SELECT 1 FROM segments s WHERE s.job_id = j.id AND s.state != 'done')
                   ORDER BY id LIMIT 1""", (now,)).fetchone()
            if row is not None:
                db.execute("UPDATE jobs SET owner = ?, heartbeat = ? WHERE id = ?", (owner, now, row["id"]))
                return Claim("assemble", JobRow.from_row(
                    db.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone()))
            row = db.execute("SELECT id FROM jobs WHERE state = 'pending' AND not_before <= ? ORDER BY id LIMIT 1",
                             (now,)).fetchone()
            if row is not None:
                db.execute("UPDATE jobs SET state = 'running', owner = ?, heartbeat = ?, "
                           "started = COALESCE(started, ?) WHERE id = ?", (owner, now, now, row["id"]))
                return Claim("job", JobRow.from_row(
                    db.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone()))
            return None

    # ---- outcomes -----------------------------------------------------------------

    def plan_segments(self, job_id: int, owner: str, ranges: Iterable[tuple[float | None, float | None]]) -> None:
        """Split a claimed job into segments; from now on any worker may take them."""
        with self.transaction() as db:
            db.execute("DELETE FROM segments WHERE job_id = ?", (job_id,))
            db.executemany("INSERT INTO segments (job_id, idx, start, end, state) VALUES (?, ?, ?, ?, 'pending')",
                           [(job_id, idx, start, end) for idx, (start, end) in enumerate(ranges)])
            db.execute("UPDATE jobs SET segmented = 1, owner = NULL, heartbeat = NULL WHERE id = ? AND owner = ?",
                       (job_id, owner))

    def finish_segment(self, job_id: int, idx: int, owner: str, *, frames: int, seconds: float) -> None:
        with self.transaction() as db:
            db.execute("UPDATE segments SET state = 'done', owner = NULL, heartbeat = NULL, frames = ?, "
                       "work_seconds = ?, finished = ? WHERE job_id = ? AND idx = ? AND owner = ?",
                       (frames, seconds, time.time(), job_id, idx, owner))

    def finish_job(self, job_id: int, owner: str, *, frames: int, seconds: float, output_bytes: int,
                   run_id: int | None) -> None:
        with self.transaction() as db:
            db.execute("UPDATE jobs SET state = 'done', owner = NULL, heartbeat = NULL, reason = NULL, frames = ?, "
                       "work_seconds = ?, output_bytes = ?, finished = ?, run_id = ? WHERE id = ? AND owner = ?",
                       (frames, seconds, output_bytes, time.time(), run_id, job_id, owner))

    def fail(self, claim: Claim, owner: str, reason: str, *, permanent: bool, max_attempts: int,
             backoff_seconds: float, run_id: int | None) -> bool:
        """Record a failed attempt; returns True if it will be retried (after the backoff)."""
        now = time.time()
        with self.transaction() as db:
            attempts = db.execute("SELECT attempts FROM jobs WHERE id = ?", (claim.job.id,)).fetchone()[0] + 1
            retry = not permanent and attempts < max_attempts
            delay = backoff_seconds * 2 ** (attempts - 1)
            if retry and claim.kind == "segment" and claim.segment is not None:
                db.execute("UPDATE segments SET state = 'pending', owner = NULL, attempts = attempts + 1, "
                           "not_before = ? WHERE job_id = ? AND idx = ?",
                           (now + delay, claim.job.id, claim.segment.idx))
                db.execute("UPDATE jobs SET attempts = ?, reason = ? WHERE id = ?", (attempts, reason, claim.job.id))
            elif retry:
                state = "running" if claim.kind == "assemble" else "pending"
                db.execute("UPDATE jobs SET state = ?, owner = NULL, attempts = ?, reason = ?, not_before = ? "
                           "WHERE id = ?", (state, attempts, reason, now + delay, claim.job.id))
            else:
                db.execute("UPDATE jobs SET state = 'failed', owner = NULL, attempts = ?, reason = ?, permanent = ?, "
                           "finished = ?, run_id = ? WHERE id = ?",
                           (attempts, reason, int(permanent), now, run_id, claim.job.id))
                db.execute("UPDATE segments SET state = 'pending', owner = NULL WHERE job_id = ? AND owner IS NOT NULL",
                           (claim.job.id,))
            return retry
