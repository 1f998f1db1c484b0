"""The batch's own state (issue #9): a job database that is checked, never silently reset;
a full disk that ends in one line and a resumable state; outputs always labelled with
the options that made them; a dry run that writes nothing; truncated inputs that fail.

The command runs as cron would start it (a fresh interpreter); the database rules that
need exact timing are exercised on ``JobsDB`` directly.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from batch_helpers import STATE, decodes_cleanly, frame_count, make_clip, report, run_batch, save_tiny_weights
from video_helpers import ffmpeg, needs_ffmpeg

from vapsr_video.batch.jobs_db import SCHEMA_VERSION, JobsDB, process_prefix
from vapsr_video.batch.tasks import UnitSettings, run_unit
from vapsr_video.errors import OutputError
from vapsr_video.inference.options import ModelOptions

pytestmark = needs_ffmpeg


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_weights(tmp_path_factory.mktemp("weights") / "tiny-x2.safetensors")


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def craft_database(path: Path, kind: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "zero-length":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(os.urandom(8192))
    elif kind == "foreign":
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
            db.execute("INSERT INTO invoices (amount) VALUES (12.5)")
            db.commit()
    elif kind == "newer":
        JobsDB(path).close()
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
            db.commit()
    elif kind == "corrupt":
        with JobsDB(path) as db:
            for index in range(300):  # enough rows for several pages
                db.upsert_discovered(rel_path=f"clip{index}.mp4", source="/s", output="/d", fingerprint="x" * 40,
                                     state="done", reason=None, permanent=False, input_bytes=1, duration=None,
                                     est_frames=None)
        data = bytearray(path.read_bytes())
        page = 4096
        data[2 * page + 100: 3 * page] = os.urandom(page - 100)  # a b-tree page of the jobs table
        path.write_bytes(bytes(data))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["zero-length", "garbage", "foreign", "newer", "corrupt"])
def test_an_unusable_job_database_is_refused_with_one_line(tmp_path: Path, weights: Path, kind: str) -> None:
    src, dst = tmp_path / "s", tmp_path / "d"
    make_clip(src / "a.mp4")
    database = dst / STATE / "jobs.sqlite"
    craft_database(database, kind)
    before = database.read_bytes()
    extra = ("--dry-run",) if kind in ("garbage", "newer") else ()  # both paths open it the same way
    result = run_batch(src, dst, weights, *extra)
    assert result.returncode == 4, result.stderr  # before: recreated silently, or a traceback
    message = one_line_error(result.stderr)
    assert str(database) in message
    if kind != "newer":
        assert "move it away" in message, "the line says how to recover"
    assert database.read_bytes() == before, "the database is never reset"
    assert not (dst / "a.mp4").exists()


def test_a_first_release_database_is_upgraded_and_its_finished_outputs_kept(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db:  # the first release: no output identities, version 0
        from vapsr_video.batch import jobs_db

        schema = jobs_db._SCHEMA.replace(",\n    output_identity TEXT,\n    replace_identity TEXT", "")
        db.executescript(schema)
        db.execute("INSERT INTO jobs (rel_path, source, output, fingerprint, state) "
                   "VALUES ('a.mp4', '/s/a.mp4', '/d/a.mp4', 'f', 'done')")
        db.commit()
    with JobsDB(path, readonly=True) as db:
        assert db.job_by_path("a.mp4").state == "done"  # read-only: readable as it is
    with JobsDB(path) as db:
        assert db.job_by_path("a.mp4").state == "done"
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


@pytest.mark.slow
def test_dry_run_writes_nothing_into_dst(tmp_path: Path, weights: Path) -> None:
    src, dst = tmp_path / "s", tmp_path / "d"
    make_clip(src / "a.mp4")
    assert run_batch(src, dst, weights).returncode == 0
    make_clip(src / "b.mp4")
    before = listing(dst)
    result = run_batch(src, dst, weights, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout and "upscale         b.mp4" in result.stdout
    assert listing(dst) == before  # before: jobs.sqlite-wal and -shm appeared


def test_a_run_only_claims_and_records_jobs_of_its_own_options(tmp_path: Path) -> None:
    # Two runs on one DST, --crf 40 (digest aaa) then --crf 10 (digest bbb): the second
    # re-plans the file; the first must neither encode it nor record its output as bbb's.
    with JobsDB(tmp_path / "jobs.sqlite") as db:
        owner = process_prefix() + "w1@cpu"

        def plan(digest: str) -> None:
            db.upsert_discovered(rel_path="a.mp4", source="/s/a.mp4", output="/d/a.mp4",
                                 fingerprint=f"10:20:abc:{digest}", state="pending", reason=None, permanent=False,
                                 input_bytes=10, duration=1.0, est_frames=10)

        plan("aaa")
        plan("bbb")
        assert db.claim(owner, options_digest="aaa") is None
        assert not db.has_open_work(process_prefix(), "aaa"), "the crf-40 run ends instead of waiting"
        claim = db.claim(owner, options_digest="bbb")
        assert claim is not None and claim.job.options_digest == "bbb"
        plan("aaa")  # a crf-40 run re-planning now must not pull the job from its live owner
        assert db.job_by_path("a.mp4").fingerprint.endswith(":bbb")
        # An attempt whose job changed meanwhile is not recorded as done.
        assert not db.finish_job(claim.job.id, owner, frames=10, seconds=1.0, output_bytes=1, run_id=None,
                                 fingerprint="10:20:abc:aaa")
        assert db.finish_job(claim.job.id, owner, frames=10, seconds=1.0, output_bytes=1, run_id=None,
                             fingerprint=claim.job.fingerprint, output_identity="1:2:3:4")
        assert db.job_by_path("a.mp4").state == "done"


def test_an_output_published_by_a_killed_attempt_is_not_redone(tmp_path: Path, weights: Path) -> None:
    # Killed after the rename, before the database heard of it: the next attempt finds the
    # file it published (same inode) and records it, instead of refusing it as foreign.
    src, dst = tmp_path / "s", tmp_path / "d"
    make_clip(src / "a.mp4")
    with JobsDB(dst / STATE / "jobs.sqlite") as db:
        db.upsert_discovered(rel_path="a.mp4", source=str(src / "a.mp4"), output=str(dst / "a.mp4"),
                             fingerprint="1:2:3:opts", state="pending", reason=None, permanent=False,
                             input_bytes=1, duration=1.0, est_frames=10)
        claim = db.claim(process_prefix() + "w1@cpu")
    assert claim is not None
    settings = UnitSettings(dst=dst)
    upscaler = ModelOptions(weights=str(weights), scale=2).build("cpu")
    first = run_unit(claim, settings, upscaler, 0)
    inode = (dst / "a.mp4").stat().st_ino
    again = run_unit(claim, settings, upscaler, 0)
    assert (dst / "a.mp4").stat().st_ino == inode, "not redone"
    assert again.frames == first.frames == 10 and again.output_identity == first.output_identity
    # Anything else there is not ours: never replaced without --overwrite.
    (dst / "a.mp4").unlink()
    (dst / "a.mp4").write_bytes(b"not ours")
    with pytest.raises(OutputError, match="appeared while it was being made"):
        run_unit(claim, settings, upscaler, 0)
    assert (dst / "a.mp4").read_bytes() == b"not ours"


@contextlib.contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder: Path, leave: int) -> Path:
    """A file that takes all the free space of ``folder``'s file system but ``leave`` bytes."""
    stat = os.statvfs(folder)
    filler = folder / "filler"
    with open(filler, "wb") as handle:
        free = stat.f_bavail * stat.f_frsize - leave
        with contextlib.suppress(OSError):
            while free > 0:
                chunk = min(free, 1 << 20)
                handle.write(b"\0" * chunk)
                free -= chunk
    return filler


@pytest.mark.slow
@pytest.mark.parametrize("leave", [0, 96 * 1024])
def test_disk_full_is_one_line_and_the_rerun_resumes(tmp_path: Path, weights: Path, leave: int) -> None:
    src = tmp_path / "s"
    make_clip(src / "a.mp4")
    with small_disk(tmp_path / "disk", "8m") as disk:
        dst = disk / "d"
        assert run_batch(src, dst, weights).returncode == 0
        for name in ("b.mp4", "c.mp4", "e.mp4"):
            make_clip(src / name, seconds=3.0)
        filler = fill(disk, leave)
        result = run_batch(src, dst, weights)
        assert result.returncode == 4, result.stderr
        message = one_line_error(result.stderr)  # before: an sqlite3 traceback
        assert "space" in message and "run the same command again" in message
        assert not [p for p in dst.rglob("*") if ".vapsr-partial" in p.name]
        filler.unlink()
        time.sleep(0.1)
        result = run_batch(src, dst, weights)
        assert result.returncode == 0, result.stderr
        for name in ("a.mp4", "b.mp4", "c.mp4", "e.mp4"):
            assert decodes_cleanly(dst / name) and frame_count(dst / name) == frame_count(src / name)
        assert report(dst)["totals"]["done"] == 4


@pytest.mark.slow
def test_a_truncated_mkv_is_recorded_failed(tmp_path: Path, weights: Path) -> None:
    src, dst = tmp_path / "s", tmp_path / "d"
    whole = tmp_path / "whole.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=3", "-c:v", "libx264", "-g", "10", whole)
    data = whole.read_bytes()
    src.mkdir()
    (src / "cut.mkv").write_bytes(data[: len(data) * 6 // 10])  # a copy that stopped early
    result = run_batch(src, dst, weights)
    entry = report(dst)["files"][0]
    assert entry["state"] == "failed", entry  # before: recorded done with 60 % of the frames
    assert result.returncode == 1 and "failed cut.mkv: " in result.stderr
    assert not (dst / "cut.mkv").exists()
