"""``vapsr-video batch``: a real archive of tiny clips, bad files among them, crashes and reruns.

Every run is the real command in a fresh interpreter (as cron would start it);
kills are SIGKILL from the test, at several points; outputs are checked with
Debian's ffprobe/ffmpeg.
"""

from __future__ import annotations

import hashlib
import signal
import time
from pathlib import Path

import pytest
from batch_helpers import (
    STATE,
    db_rows,
    decodes_cleanly,
    frame_count,
    kill_hard,
    leftovers,
    make_archive,
    make_clip,
    make_long_clip_with_extras,
    output_for,
    report,
    run_batch,
    save_tiny_weights,
    start_batch,
    video_size,
    wait_for,
)
from video_helpers import chapters, format_info, frame_times, needs_ffmpeg, stream_md5, streams

from vapsr_video.batch.tasks import PUBLISHED_NOTE

pytestmark = [needs_ffmpeg, pytest.mark.slow]


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_weights(tmp_path_factory.mktemp("weights") / "tiny-x2.safetensors")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def outputs_under(dst: Path) -> set[str]:
    return {p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file() and STATE not in p.parts}


def assert_good_output(source: Path, output: Path) -> None:
    assert output.is_file(), f"missing output {output}"
    assert video_size(output) == (128, 96)
    assert frame_count(output) == frame_count(source)
    assert decodes_cleanly(output), f"{output} does not decode cleanly"


def test_batch_over_an_archive_then_rerun_and_change(tmp_path: Path, weights: Path) -> None:
    src, dst = tmp_path / "archive", tmp_path / "upscaled"
    kinds = make_archive(src)
    inputs_before = {p: digest(p) for p in src.rglob("*") if p.is_file()}

    result = run_batch(src, dst, weights, "--report", str(tmp_path / "report.csv"))
    assert result.returncode == 1, result.stderr  # some files failed
    assert "Traceback" not in result.stderr
    for rel in kinds["good"]:
        assert_good_output(src / rel, output_for(dst, rel))
    assert outputs_under(dst) == {output_for(dst, rel).relative_to(dst).as_posix() for rel in kinds["good"]}
    assert leftovers(dst) == []
    assert {p: digest(p) for p in src.rglob("*") if p.is_file()} == inputs_before, "inputs are never written"

    summary = report(dst)
    states = {entry["path"]: entry for entry in summary["files"]}
    for rel in kinds["failed"]:
        assert states[rel]["state"] == "failed" and rel.split("/")[-1] in states[rel]["reason"]
        assert f"failed {rel}: " in result.stderr, "quiet mode still names each failure"
    assert states["nested/empty.mp4"]["reason"].endswith("empty file")
    assert states["notes.txt"]["state"] == "skipped" and states["notes.txt"]["reason"] == "not a media file"
    assert summary["totals"]["done"] == 3 and summary["totals"]["frames_this_run"] == 10 + 10 + 15
    assert (tmp_path / "report.csv").read_text().startswith("path,output,state,reason")
    assert "done nested/deeper/ünïcode ✓.mkv" in (dst / STATE / "batch.log").read_text(encoding="utf-8")

    # A rerun after completion does nothing.
    stamps = {p: p.stat().st_mtime_ns for p in (output_for(dst, rel) for rel in kinds["good"])}
    result = run_batch(src, dst, weights)
    assert result.returncode == 1  # the same files are still failed
    assert report(dst)["totals"]["done_this_run"] == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    # A changed input is redone, and only it.
    changed = src / kinds["good"][0]
    make_clip(changed, seconds=2.0)
    result = run_batch(src, dst, weights)
    assert report(dst)["totals"]["done_this_run"] == 1, (dst / STATE / "batch.log").read_text(encoding="utf-8")
    assert frame_count(output_for(dst, kinds["good"][0])) == 20
    for path, stamp in stamps.items():
        if path != output_for(dst, kinds["good"][0]):
            assert path.stat().st_mtime_ns == stamp


def test_dry_run_lists_and_changes_nothing(tmp_path: Path, weights: Path) -> None:
    src, dst = tmp_path / "archive", tmp_path / "upscaled"
    make_archive(src)
    result = run_batch(src, dst, weights, "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("upscale") and "nested/disguised.bin" in line and "disguised.bin.mkv" in line
               for line in lines), "a video with an unusual extension is found by probing"
    assert any(line.startswith("skip") and "notes.txt" in line for line in lines)
    assert any(line.startswith("fail") and "corrupt.mp4" in line for line in lines)
    assert not dst.exists()


def test_sigkill_at_several_points_then_rerun_until_done(tmp_path: Path, weights: Path) -> None:
    src, dst = tmp_path / "archive", tmp_path / "upscaled"
    kinds = make_archive(src)
    make_clip(src / "nested" / "more.mp4", seconds=6.0)  # long enough to be caught in flight
    good = [*kinds["good"], "nested/more.mp4"]

    def running() -> bool:
        return bool(db_rows(dst, "SELECT 1 FROM jobs WHERE state = 'running'"))

    def done_count() -> int:
        return len(db_rows(dst, "SELECT 1 FROM jobs WHERE state = 'done'"))

    # 1: in the middle of the first file; 2: just after a file finished; 3: a while into the next one.
    process = start_batch(src, dst, weights)
    assert wait_for(running)
    time.sleep(0.5)
    kill_hard(process)
    process = start_batch(src, dst, weights)
    assert wait_for(lambda: done_count() >= 1)
    kill_hard(process)
    before = done_count()
    process = start_batch(src, dst, weights)
    # On a fast machine the last files can all finish before the poll sees one running.
    assert wait_for(lambda: (running() and done_count() >= before) or process.poll() is not None)
    time.sleep(1.5)
    kill_hard(process)
    interrupted = db_rows(dst, "SELECT rel_path FROM jobs WHERE state = 'running'")

    result = run_batch(src, dst, weights)
    assert result.returncode == 1, result.stderr
    for rel in good:
        assert_good_output(src / rel, output_for(dst, rel))
    assert outputs_under(dst) == {output_for(dst, rel).relative_to(dst).as_posix() for rel in good}
    assert leftovers(dst) == [], "partial output of the killed runs is discarded"
    states = {entry["path"]: entry["state"] for entry in report(dst)["files"]}
    assert all(states[rel] == "failed" for rel in kinds["failed"])
    for (rel,) in interrupted:
        assert states[rel] == "done"


def test_long_clip_resumes_from_its_last_finished_segment(tmp_path: Path, weights: Path) -> None:
    src, dst = tmp_path / "archive", tmp_path / "upscaled"
    source = make_long_clip_with_extras(src / "film.mkv", seconds=3.0)
    options = ("--segment-seconds", "0.5")

    def finished_segments() -> list[tuple]:
        return db_rows(dst, "SELECT idx, started, finished FROM segments WHERE state = 'done' ORDER BY idx")

    process = start_batch(src, dst, weights, *options)
    assert wait_for(lambda: len(finished_segments()) >= 2)
    kill_hard(process)
    killed_at = time.time()
    kept = finished_segments()
    total = db_rows(dst, "SELECT COUNT(*) FROM segments")[0][0]
    assert total == 6 and len(kept) < total

    result = run_batch(src, dst, weights, *options)
    assert result.returncode == 0, result.stderr
    after = {row[0]: row for row in db_rows(dst, "SELECT idx, started, finished FROM segments")}
    for row in kept:
        assert after[row[0]] == row, f"finished segment {row[0]} was redone"
    assert all(after[idx][1] > killed_at for idx in after if idx not in {row[0] for row in kept})

    output = dst / "film.mkv"
    assert leftovers(dst) == []
    # The assembled file passes the same checks as a single pass.
    assert video_size(output) == (128, 96)
    assert decodes_cleanly(output)
    assert frame_count(output) == frame_count(source) == 30
    assert frame_times(output) == frame_times(source)
    assert stream_md5(output, "0:a") == stream_md5(source, "0:a")
    kinds = [stream["codec_type"] for stream in streams(output)]
    assert kinds == ["video", "audio", "subtitle"]
    audio = streams(output)[1]["tags"]
    assert audio.get("language") == "eng" and audio.get("title") == "Commentary"
    assert format_info(output)["tags"].get("title") == "A long film"
    assert [c["tags"]["title"] for c in chapters(output)] == ["Opening", "Ending"]
    assert stream_md5(output, "0:s") == stream_md5(source, "0:s")


def test_two_batch_processes_never_process_the_same_file(tmp_path: Path, weights: Path) -> None:
    src, dst = tmp_path / "archive", tmp_path / "upscaled"
    names = [f"clip{index}.mp4" for index in range(4)]
    for name in names:
        make_clip(src / name)
    first, second = start_batch(src, dst, weights), start_batch(src, dst, weights)
    for process in (first, second):
        process.communicate(timeout=300)
        assert process.returncode == 0
    log = (dst / STATE / "batch.log").read_text(encoding="utf-8")
    for name in names:
        assert log.count(f" on cpu: {name}\n") == 1, f"{name} was claimed more than once:\n{log}"
        assert log.count(f"done {name} ") == 1
        assert_good_output(src / name, dst / name)
    assert leftovers(dst) == []


def test_ctrl_c_stops_cleanly_and_the_rerun_finishes(tmp_path: Path, weights: Path) -> None:
    src, dst = tmp_path / "archive", tmp_path / "upscaled"
    for name in ("one.mp4", "two.mp4"):
        make_clip(src / name, seconds=8.0)  # long enough that Ctrl-C lands inside a job on a fast machine
    process = start_batch(src, dst, weights)
    assert wait_for(lambda: bool(db_rows(dst, "SELECT 1 FROM jobs WHERE state = 'running'")))
    # Frozen while Ctrl-C is queued: on an idle machine the tiny jobs could otherwise all finish
    # between seeing one run and the signal arriving (then there is nothing left to interrupt).
    process.send_signal(signal.SIGSTOP)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGCONT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    assert db_rows(dst, "SELECT COUNT(*) FROM jobs WHERE state = 'running'") == [(0,)]
    assert db_rows(dst, "SELECT COUNT(*) FROM jobs WHERE state = 'pending'")[0][0] >= 1
    # Nothing half-written; the work folder may keep only the note of an output published just before
    # Ctrl-C and not yet recorded, which the rerun must recognise instead of refusing it.
    work = dst / STATE / "work"
    assert [p for p in leftovers(dst) if p != work] == []
    assert all(p.name == PUBLISHED_NOTE for p in work.rglob("*") if p.is_file()) if work.exists() else True
    result = run_batch(src, dst, weights)
    assert result.returncode == 0, result.stderr
    for name in ("one.mp4", "two.mp4"):
        assert_good_output(src / name, dst / name)
