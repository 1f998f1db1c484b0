"""Outputs appear whole or not at all, with ordinary permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from vapsr_video.errors import OutputError
from vapsr_video.safe_output import TEMP_PREFIX, atomic_output, check_output_path, publish


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
