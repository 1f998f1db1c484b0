"""Outputs appear whole or not at all, with ordinary permissions."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from vapsr_video.errors import OutputError
from vapsr_video.safe_output import (
    TEMP_PREFIX,
    atomic_output,
    check_output_path,
    publish,
    remove_stale_temporaries,
    temporary_prefix,
)


def test_completed_output_gets_the_permissions_of_a_normal_file(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    with atomic_output(target) as temporary:
        temporary.write_bytes(b"data")
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert target.read_bytes() == b"data"


def test_failed_output_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError), atomic_output(target) as temporary:
        temporary.write_bytes(b"half")
        raise RuntimeError("encoder died")
    assert list(tmp_path.iterdir()) == []
    assert not any(p.name.startswith(TEMP_PREFIX) for p in tmp_path.iterdir())


def test_output_path_refusals(tmp_path: Path) -> None:
    source = tmp_path / "in.mp4"
    source.write_bytes(b"x")
    with pytest.raises(OutputError, match="is the input"):
        check_output_path(source, tmp_path / "." / "in.mp4")
    existing = tmp_path / "out.mp4"
    existing.write_bytes(b"keep")
    with pytest.raises(OutputError, match="already exists"):
        check_output_path(source, existing)
    assert check_output_path(source, existing, overwrite=True) == existing
    with pytest.raises(OutputError, match="does not exist"):
        check_output_path(source, tmp_path / "missing" / "out.mp4")


def test_publish_without_overwrite_never_replaces_an_existing_file(tmp_path: Path) -> None:
    final = tmp_path / "out.mp4"
    final.write_bytes(b"the user's file")
    staged = tmp_path / "staged.mp4"
    staged.write_bytes(b"new")
    with pytest.raises(OutputError, match="already exists"):
        publish(staged, final, overwrite=False)
    assert final.read_bytes() == b"the user's file"


def test_publish_moves_the_file_whole_with_normal_permissions(tmp_path: Path) -> None:
    final = tmp_path / "out.mp4"
    final.write_bytes(b"old")
    staged = tmp_path / "staged.mp4"
    staged.write_bytes(b"new")
    os.chmod(staged, 0o600)
    publish(staged, final, overwrite=True)
    assert final.read_bytes() == b"new" and not staged.exists()
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(final.stat().st_mode) == 0o666 & ~umask
    fresh = tmp_path / "fresh.mp4"
    staged.write_bytes(b"newer")
    publish(staged, fresh, overwrite=False)
    assert fresh.read_bytes() == b"newer" and not staged.exists()


def test_output_that_appears_while_writing_is_kept_without_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    with pytest.raises(OutputError, match="already exists"), atomic_output(target, overwrite=False) as temporary:
        temporary.write_bytes(b"ours")
        target.write_bytes(b"someone else's")  # another program got there first
    assert target.read_bytes() == b"someone else's"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_publish_returns_the_size_it_published(tmp_path: Path) -> None:
    staged = tmp_path / "staged.mkv"
    staged.write_bytes(b"12345")
    assert publish(staged, tmp_path / "final.mkv", overwrite=False) == 5


def test_temporary_names_say_who_wrote_them_and_keep_the_extension(tmp_path: Path) -> None:
    with atomic_output(tmp_path / "film.mkv") as temporary:
        name = temporary.name
        assert name.startswith(temporary_prefix()) and name.endswith("-film.mkv") and temporary.suffix == ".mkv"
        assert f"-{os.getpid()}-" in name
        assert remove_stale_temporaries(tmp_path) == []  # our own, live: kept
        assert temporary.exists()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid  # reaped: no process has this pid now (reuse within the test is vanishingly unlikely)


def test_only_stale_temporaries_of_this_machine_are_removed(tmp_path: Path) -> None:
    host = temporary_prefix()[len(TEMP_PREFIX):].split("-")[0]
    dead = tmp_path / f"{TEMP_PREFIX}{host}-{_dead_pid()}-12345-abcd1234-out.mkv"
    # A live pid whose start time differs: the pid was reused, the writer is gone.
    reused = tmp_path / f"{TEMP_PREFIX}{host}-{os.getpid()}-1-abcd1234-out.mkv"
    live = tmp_path / f"{temporary_prefix()}abcd1234-out.mkv"
    other_host = tmp_path / f"{TEMP_PREFIX}000000-{_dead_pid()}-12345-abcd1234-out.mkv"
    not_ours = tmp_path / f"{TEMP_PREFIX}someone-elses.mkv"
    unrelated = tmp_path / "out.mkv"
    for path in (dead, reused, live, other_host, not_ours, unrelated):
        path.write_bytes(b"x")
    if host == "000000":
        pytest.skip("this machine's name hashes to the other host's tag")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(removed) == sorted([dead, reused])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (live, other_host, not_ours, unrelated))


def test_no_clobber_rename_where_hard_links_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Some network and FUSE file systems have no hard links; renameat2(RENAME_NOREPLACE) still refuses
    to replace a file there (faked here by making link() fail as such a file system does)."""

    def no_links(source: object, target: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    final = tmp_path / "out.mkv"
    final.write_bytes(b"the user's file")
    staged = tmp_path / "staged.mkv"
    staged.write_bytes(b"new")
    with pytest.raises(OutputError, match="already exists"):
        publish(staged, final, overwrite=False)
    assert final.read_bytes() == b"the user's file" and staged.exists()
    fresh = tmp_path / "fresh.mkv"
    assert publish(staged, fresh, overwrite=False) == 3 and not staged.exists()
