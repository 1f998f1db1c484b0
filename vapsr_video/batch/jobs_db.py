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

The database is checked whenever it is opened (SQLite's ``quick_check``, the
schema version, the tables): an empty, foreign, corrupt or newer one is refused
with a line that says how to recover, never silently reset, because a reset
would make every finished output look foreign. A new database is built under a
temporary name and linked into place, so a concurrent run never sees it half made.
A read-only open (``--dry-run``) creates no ``-wal``/``-shm`` files.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from vapsr_video.errors import OutputError

DEFAULT_LEASE_SECONDS = 120.0
# PRAGMA user_version of the database this code writes. 0: the first release (no
# output identities), upgraded in place when opened for writing.
SCHEMA_VERSION = 2
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
    run_id INTEGER,
    output_identity TEXT,
    replace_identity TEXT
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
_TABLES = {"jobs", "segments", "runs"}
# Columns added after the first release: (name, declaration).
_ADDED_COLUMNS = (("output_identity", "TEXT"), ("replace_identity", "TEXT"))
RECOVERY_HINT = ("move it away and run again to start a new one (outputs already there are then kept and "
                 "reported as not from this batch; add --overwrite to redo them)")


def state_error(path: Path, exc: BaseException) -> OutputError:
    """One line for an SQLite failure on the job database at ``path``."""
    text = " ".join(str(exc).split())
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name:
        text = f"{text}, {name}"
    if "full" in text.lower() or (name.startswith("SQLITE_IOERR") and _nearly_full(path.parent)):
        return OutputError(f"{path}: no space left for the job database ({text}); free some space and run "
                           "the same command again to resume")
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
        return OutputError(f"{path}: the job database is damaged ({text}); {RECOVERY_HINT}")
    return OutputError(f"{path}: the job database cannot be used ({text})")


def _nearly_full(folder: Path) -> bool:
    """An SQLite I/O error on a file system with (almost) no space left is a full disk: SQLite
    reports a failed growth of its shared-memory file that way."""
    try:
        stat = os.statvfs(folder)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < 1024 * 1024


def output_identity(path: str | Path) -> str | None:
    """Device, inode, size and modification time of the file at ``path`` (None if absent):
    what tells the file this batch published from one that replaced it since."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return f"{stat.st_dev}:{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}"


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
    output_identity: str | None = None  # what this batch published at ``output`` (see :func:`output_identity`)
    replace_identity: str | None = None  # what the next attempt may replace there: None nothing, "*" anything

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> JobRow:
        present = set(row.keys())  # a read-only look at a first-release database lacks the new columns
        return cls(**{name: row[name] for name in cls.__dataclass_fields__ if name in present})

    @property
    def options_digest(self) -> str:
        """The options part of the fingerprint: the options this job's output must be made with."""
        return self.fingerprint.rsplit(":", 1)[-1]


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
                 readonly: bool = False, check: bool = True) -> None:
        """Open (or create) the database at ``path``. ``check``: verify it (see the module
        docstring); a process that already opened and checked it may skip that for its
        further connections, since ``quick_check`` reads the whole file."""
        self.path = Path(path)
        self.lease_seconds = lease_seconds
        try:
            if readonly:
                self._conn = self._connect_readonly()
            else:
                if not self.path.exists():
                    self._create()
                self._conn = self._connect(self.path)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA busy_timeout = 60000")
            if check:
                self._check(upgrade=not readonly)
            if not readonly:
                # WAL: readers never block the writer; synchronous=FULL: a committed state
                # change survives a power loss (the outputs it points at are fsynced too).
                self._conn.execute("PRAGMA journal_mode = WAL")
                self._conn.execute("PRAGMA synchronous = FULL")
                self._conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            with contextlib.suppress(AttributeError, sqlite3.Error):
                self._conn.close()
            raise state_error(self.path, exc) from None
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot open the job database ({exc.strerror or exc})") from None
        except OutputError:
            with contextlib.suppress(AttributeError, sqlite3.Error):
                self._conn.close()
            raise

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        return sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)

    def _connect_readonly(self) -> sqlite3.Connection:
        """Open without writing anything: with no ``-wal`` file beside it the database file is
        complete and is read as immutable (SQLite then creates no ``-wal``/``-shm``); with one, a
        batch is running or was killed, and a plain read-only open sees its latest commits."""
        uri = Path(os.path.abspath(self.path)).as_uri()
        wal = Path(f"{self.path}-wal")
        mode = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
        return sqlite3.connect(f"{uri}?{mode}", uri=True, timeout=60, isolation_level=None,
                               check_same_thread=False)

    def _create(self) -> None:
        """Build the schema under a temporary name, then link it into place (never replacing a
        database another run created meanwhile)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.new-{os.getpid()}-{threading.get_ident()}")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        try:
            conn = self._connect(temporary)
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.executescript(_SCHEMA)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            finally:
                conn.close()  # the last connection checkpoints and removes the -wal file
            with open(temporary, "rb") as handle:
                os.fsync(handle.fileno())
            try:
                os.link(temporary, self.path)
            except FileExistsError:
                pass  # another run created it meanwhile: use that one
            except OSError:
                # No hard links here (some network file systems): check, then rename.
                if not self.path.exists():
                    os.replace(temporary, self.path)
        finally:
            for leftover in (temporary, Path(f"{temporary}-wal"), Path(f"{temporary}-shm")):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()

    def _check(self, *, upgrade: bool) -> None:
        """Refuse an empty, corrupt, foreign or newer database; upgrade an older one of ours."""
        if self.path.stat().st_size == 0:
            raise OutputError(f"{self.path}: the job database is empty (a crash or a full disk?); {RECOVERY_HINT}")
        try:
            verdict = [row[0] for row in self._conn.execute("PRAGMA quick_check")]
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):
                raise  # locked, disk full, I/O error: about the disk, not the content (see state_error)
            raise OutputError(f"{self.path}: cannot be read as a job database of vapsr-video ({exc}); "
                              f"{RECOVERY_HINT}") from None
        if verdict != ["ok"]:
            raise OutputError(f"{self.path}: the job database is corrupt ({'; '.join(verdict[:3])}); "
                              f"{RECOVERY_HINT}")
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if version > SCHEMA_VERSION:
            raise OutputError(f"{self.path}: the job database was written by a newer vapsr-video "
                              f"(schema {version}, this one knows {SCHEMA_VERSION}); upgrade vapsr-video")
        if tables != _TABLES or version not in (0, SCHEMA_VERSION):
            found = ", ".join(sorted(tables)) or "none"
            raise OutputError(f"{self.path}: is not a job database of vapsr-video (tables: {found}; "
                              f"schema {version}); {RECOVERY_HINT}")
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(jobs)")}
        if "fingerprint" not in columns or "rel_path" not in columns:
            raise OutputError(f"{self.path}: is not a job database of vapsr-video (its jobs table differs); "
                              f"{RECOVERY_HINT}")
        if version == 0 and upgrade:
            with self.transaction() as db:
                columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
                for name, declaration in _ADDED_COLUMNS:
                    if name not in columns:
                        db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {declaration}")
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

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

    def has_open_work(self, owner_prefix: str, options_digest: str | None = None) -> bool:
        """Whether waiting may still yield work for ``owner_prefix``'s workers: something
        pending (maybe in backoff), or running under this process (it may add segments);
        with ``options_digest``, only jobs that ask for those options count."""
        like = owner_prefix + "%"
        wanted = "%" if options_digest is None else "%:" + options_digest
        query = """
            SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 'pending' AND fingerprint LIKE :wanted)
                OR EXISTS (SELECT 1 FROM segments s JOIN jobs j ON j.id = s.job_id
                           WHERE s.state = 'pending' AND j.state = 'running' AND j.fingerprint LIKE :wanted)
                OR EXISTS (SELECT 1 FROM jobs WHERE state = 'running' AND owner LIKE :mine)
                OR EXISTS (SELECT 1 FROM segments WHERE state = 'running' AND owner LIKE :mine)
                OR EXISTS (SELECT 1 FROM jobs j WHERE state = 'running' AND segmented = 1 AND owner IS NULL
                           AND fingerprint LIKE :wanted
                           AND NOT EXISTS (SELECT 1 FROM segments s WHERE s.job_id = j.id AND s.state != 'done'))
        """
        return bool(self._conn.execute(query, {"mine": like, "wanted": wanted}).fetchone()[0])

    # ---- discovery ----------------------------------------------------------------

    def upsert_discovered(self, *, rel_path: str, source: str, output: str, fingerprint: str, state: str,
                          reason: str | None, permanent: bool, input_bytes: int, duration: float | None,
                          est_frames: int | None, run_id: int | None = None,
                          replace_identity: str | None = None) -> None:
        """Record what discovery found for one input (the rules are in ``batch/sync.py``).

        ``replace_identity``: the file the output of this job may replace when it is published
        (None: there must be none; ``"*"``: anything, ``--overwrite``)."""
        with self.transaction() as db:
            row = db.execute("SELECT * FROM jobs WHERE rel_path = ?", (rel_path,)).fetchone()
            if row is None:
                db.execute(
                    """INSERT INTO jobs (rel_path, source, output, fingerprint, state, reason, permanent,
                       input_bytes, duration, est_frames, run_id, replace_identity)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (rel_path, source, output, fingerprint, state, reason, int(permanent), input_bytes,
                     duration, est_frames, run_id, replace_identity))
                return
            if row["state"] == "running" and row["owner"] and not self._owner_dead(row["owner"], row["heartbeat"]):
                return  # another live process is on it; never pull a job from under it
            for segment in db.execute("SELECT owner, heartbeat FROM segments WHERE job_id = ? AND state = 'running'",
                                      (row["id"],)).fetchall():
                if segment["owner"] and not self._owner_dead(segment["owner"], segment["heartbeat"]):
                    return  # a live worker is encoding a segment of it with the options it was claimed with
            db.execute("DELETE FROM segments WHERE job_id = ?", (row["id"],))
            db.execute(
                """UPDATE jobs SET source = ?, output = ?, fingerprint = ?, state = ?, reason = ?, permanent = ?,
                   attempts = 0, interruptions = 0, not_before = 0, owner = NULL, heartbeat = NULL,
                   segmented = 0, input_bytes = ?, duration = ?, est_frames = ?, frames = NULL,
                   work_seconds = NULL, output_bytes = NULL, started = NULL, finished = NULL, run_id = ?,
                   replace_identity = ? WHERE id = ?""",
                (source, output, fingerprint, state, reason, int(permanent), input_bytes, duration, est_frames,
                 run_id, replace_identity, row["id"]))

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

    def claim(self, owner: str, *, device: str = "", options_digest: str | None = None) -> Claim | None:
        """Atomically take the next unit of work for ``owner``, or None if nothing is ready.

        Order: segments of files already under way (so a long file spreads over
        every device and finishes first), then assemblies, then new files.
        ``options_digest``: only units of jobs that ask for these options (the ones
        the claiming run encodes with); a run with other options leaves them alone,
        so an output and the options recorded for it always match.
        """
        now = time.time()
        wanted = "%" if options_digest is None else "%:" + options_digest
        with self.transaction() as db:
            self._reclaim_stale(db, now)
            row = db.execute(
                """SELECT s.job_id, s.idx FROM segments s JOIN jobs j ON j.id = s.job_id
                   WHERE s.state = 'pending' AND j.state = 'running' AND s.not_before <= ?
                   AND j.fingerprint LIKE ? ORDER BY j.id, s.idx LIMIT 1""", (now, wanted)).fetchone()
            if row is not None:
                db.execute("UPDATE segments SET state = 'running', owner = ?, heartbeat = ?, started = ?, device = ? "
                           "WHERE job_id = ? AND idx = ?", (owner, now, now, device, row["job_id"], row["idx"]))
                job = JobRow.from_row(db.execute("SELECT * FROM jobs WHERE id = ?", (row["job_id"],)).fetchone())
                segment = SegmentRow.from_row(db.execute(
                    "SELECT * FROM segments WHERE job_id = ? AND idx = ?", (row["job_id"], row["idx"])).fetchone())
                return Claim("segment", job, segment)
            row = db.execute(
                """SELECT id FROM jobs j WHERE state = 'running' AND segmented = 1 AND owner IS NULL
                   AND not_before <= ? AND fingerprint LIKE ?
                   AND NOT EXISTS (SELECT 1 FROM segments s WHERE s.job_id = j.id AND s.state != 'done')
                   ORDER BY id LIMIT 1""", (now, wanted)).fetchone()
            if row is not None:
                db.execute("UPDATE jobs SET owner = ?, heartbeat = ? WHERE id = ?", (owner, now, row["id"]))
                return Claim("assemble", JobRow.from_row(
                    db.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone()))
            row = db.execute("SELECT id FROM jobs WHERE state = 'pending' AND not_before <= ? AND fingerprint LIKE ? "
                             "ORDER BY id LIMIT 1", (now, wanted)).fetchone()
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
                   run_id: int | None, fingerprint: str | None = None, output_identity: str | None = None) -> bool:
        """Mark a job done by ``owner``; with ``fingerprint``, only if the job still asks for the
        input and options that attempt used. Returns whether the row was updated."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE jobs SET state = 'done', owner = NULL, heartbeat = NULL, reason = NULL, frames = ?, "
                "work_seconds = ?, output_bytes = ?, finished = ?, run_id = ?, output_identity = ?, "
                "replace_identity = NULL WHERE id = ? AND owner = ? AND fingerprint = COALESCE(?, fingerprint)",
                (frames, seconds, output_bytes, time.time(), run_id, output_identity, job_id, owner, fingerprint))
            return cursor.rowcount > 0

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
