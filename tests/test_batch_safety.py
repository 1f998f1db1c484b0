"""``vapsr-video batch`` never writes to, or inside, what it reads (issue #9).

Each test runs the real command in a fresh interpreter on tiny clips made with
Debian's ffmpeg, and checks the sources byte for byte afterwards.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from batch_helpers import (
    STATE,
    db_rows,
    decodes_cleanly,
    frame_count,
    make_clip,
    report,
    run_batch,
    save_tiny_weights,
    start_batch,
    wait_for,
)
from video_helpers import needs_ffmpeg

pytestmark = [needs_ffmpeg, pytest.mark.slow]


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_weights(tmp_path_factory.mktemp("weights") / "tiny-x2.safetensors")


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file (and link) under ``folder`` with a hash of its bytes: sources must not change."""
    found = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():
            found[rel] = "link -> " + os.readlink(path)
        elif path.is_file():
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[rel] = "folder"
    return found


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_dst_inside_src_holding_sources_is_refused_even_with_overwrite(tmp_path: Path, weights: Path) -> None:
    # The reproduction: s/sub/a.mp4 used to be replaced by the upscale of s/a.mp4.
    src = tmp_path / "s"
    make_clip(src / "a.mp4")
    make_clip(src / "sub" / "a.mp4", seconds=2.0)
    before = tree_digest(src)
    result = run_batch(src, src / "sub", weights, "--overwrite")
    assert result.returncode == 2
    assert "DST lies inside SRC and already holds files" in one_line_error(result.stderr)
    assert tree_digest(src) == before, "nothing is written into SRC"


@pytest.mark.parametrize("case", ["dst is src", "src inside dst", "db inside src"])
def test_folder_layouts_that_would_write_into_sources_are_refused(tmp_path: Path, weights: Path, case: str) -> None:
    outer = tmp_path / "outer"
    src = outer / "inner" if case == "src inside dst" else outer
    make_clip(src / "a.mp4")
    dst, extra = {"dst is src": (src, ()), "src inside dst": (outer, ()),
                  "db inside src": (tmp_path / "out", ("--db", str(src / "jobs.sqlite")))}[case]
    before = tree_digest(outer)
    result = run_batch(src, dst, weights, *extra)
    assert result.returncode == 2, result.stderr
    message = one_line_error(result.stderr)
    assert {"dst is src": "must differ from SRC", "src inside dst": "lies inside DST",
            "db inside src": "--db"}[case] in message
    assert tree_digest(outer) == before
    assert not (tmp_path / "out").exists()


def test_earlier_destinations_hidden_files_and_appledouble_are_not_walked(tmp_path: Path, weights: Path) -> None:
    src = tmp_path / "s"
    make_clip(src / "a.mp4")
    (src / "._a.mp4").write_bytes(os.urandom(4096))  # macOS AppleDouble: not a video, fails if walked
    (src / ".DS_Store").write_bytes(os.urandom(512))
    (src / ".hidden").mkdir()
    (src / ".hidden" / "b.mp4").write_bytes(os.urandom(512))

    first = run_batch(src, src / "out1", weights)
    assert first.returncode == 0, first.stderr  # before: ._a.mp4 failed on every run, exit 1
    assert [entry["path"] for entry in report(src / "out1")["files"]] == ["a.mp4"]
    # A later batch into another folder of SRC must not take the first one's outputs for sources.
    second = run_batch(src, src / "out2", weights)
    assert second.returncode == 0, second.stderr
    assert [entry["path"] for entry in report(src / "out2")["files"]] == ["a.mp4"]
    assert sorted(p.relative_to(src / "out2").as_posix() for p in (src / "out2").rglob("*.mp4")) == ["a.mp4"]


def test_links_out_of_src_are_skipped_and_outputs_never_resolve_onto_sources(tmp_path: Path, weights: Path) -> None:
    src, dst, elsewhere = tmp_path / "s", tmp_path / "d", tmp_path / "elsewhere"
    make_clip(src / "sub" / "b.mp4")
    make_clip(elsewhere / "outside.mp4")
    (src / "link.mp4").symlink_to(elsewhere / "outside.mp4")
    dst.mkdir()
    (dst / "sub").symlink_to(src / "sub")  # DST/sub/b.mp4 would be SRC/sub/b.mp4 itself
    before = tree_digest(src) | tree_digest(elsewhere)

    result = run_batch(src, dst, weights, "--overwrite")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    states = {entry["path"]: entry for entry in report(dst)["files"]}
    assert states["link.mp4"]["state"] == "skipped"
    assert "symbolic link" in states["link.mp4"]["reason"]
    assert states["sub/b.mp4"]["state"] == "failed"
    assert "refusing to write there" in states["sub/b.mp4"]["reason"]
    assert tree_digest(src) | tree_digest(elsewhere) == before, "no source was written"
    assert "skipped link.mp4: a symbolic link" in result.stderr, "--quiet still names every skip with its reason"


def test_a_file_that_appears_at_the_output_meanwhile_is_not_replaced(tmp_path: Path, weights: Path) -> None:
    src, dst = tmp_path / "s", tmp_path / "d"
    make_clip(src / "a.mp4", seconds=8.0)  # long enough to place a file while it is being made
    process = start_batch(src, dst, weights)
    assert wait_for(lambda: bool(db_rows(dst, "SELECT 1 FROM jobs WHERE state = 'running'")))
    (dst / "a.mp4").write_bytes(b"someone else's file")
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1, stderr
    assert (dst / "a.mp4").read_bytes() == b"someone else's file"
    entry = report(dst)["files"][0]
    assert entry["state"] == "failed" and "appeared while it was being made" in entry["reason"]
    assert not [p for p in dst.rglob("*") if ".vapsr-partial" in p.name]

    # The reason says to pass --overwrite; doing so replaces it.
    result = run_batch(src, dst, weights, "--overwrite")
    assert result.returncode == 0, result.stderr
    assert frame_count(dst / "a.mp4") == 80 and decodes_cleanly(dst / "a.mp4")


def test_overwrite_redoes_a_file_skipped_for_a_foreign_output(tmp_path: Path, weights: Path) -> None:
    src, dst = tmp_path / "s", tmp_path / "d"
    make_clip(src / "a.mp4")
    dst.mkdir()
    (dst / "a.mp4").write_bytes(b"mine")
    result = run_batch(src, dst, weights)
    assert result.returncode == 0, result.stderr
    assert (dst / "a.mp4").read_bytes() == b"mine"
    assert "skipped a.mp4: its output already exists" in result.stderr
    result = run_batch(src, dst, weights, "--overwrite")
    assert result.returncode == 0, result.stderr
    assert report(dst)["files"][0]["state"] == "done"  # before: stayed skipped for ever
    assert frame_count(dst / "a.mp4") == 10


def test_control_characters_in_names_cannot_forge_lines(tmp_path: Path, weights: Path) -> None:
    src, dst = tmp_path / "s", tmp_path / "d"
    evil = "bad\ndone forged.mp4 -> x\n.mp4"
    make_clip(src / evil)  # a good clip: claimed, done and logged under its name
    (src / "worse\nfailed x.mp4: forged\n.mp4").write_bytes(os.urandom(2000))  # fails, reason names it

    listing = run_batch(src, dst, weights, "--dry-run")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert len(lines) == 3, lines  # two files and the total
    assert any(line.startswith("upscale") and "bad\\ndone forged.mp4 -> x\\n.mp4" in line for line in lines)
    assert any(line.startswith("fail") and "worse\\nfailed x.mp4: forged\\n.mp4" in line for line in lines)

    result = run_batch(src, dst, weights)
    assert result.returncode == 1
    quiet_lines = result.stderr.splitlines()
    assert len(quiet_lines) == 1 and quiet_lines[0].startswith("failed worse\\nfailed x.mp4: forged"), quiet_lines
    log_lines = (dst / STATE / "batch.log").read_text(encoding="utf-8").splitlines()
    assert all(line[:4].isdigit() for line in log_lines), "every log line starts with its time stamp"
    assert any(" done bad\\ndone forged.mp4 -> x\\n.mp4 -> " in line for line in log_lines)
    assert (dst / evil).is_file()


def test_output_ext_must_be_a_plain_extension(tmp_path: Path, weights: Path) -> None:
    src, dst = tmp_path / "s", tmp_path / "d"
    make_clip(src / "a.mp4")
    result = run_batch(src, dst, weights, "--output-ext", ".mkv/../x")
    assert result.returncode == 2
    assert "--output-ext" in one_line_error(result.stderr)
    assert not dst.exists()
