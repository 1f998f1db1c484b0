"""Outputs appear whole or not at all, with ordinary permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from vapsr_video.errors import OutputError
from vapsr_video.safe_output import TEMP_PREFIX, atomic_output, check_output_path


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
