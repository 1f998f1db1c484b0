"""Finding the inputs of a batch: walk SRC, filter by globs, probe, fingerprint.

A file is a video because FFmpeg can open it and finds a video stream in it,
not because of its name: ``clip.bin`` holding an MP4 is processed, a text file
named ``x.mp4`` fails with its reason, and a text file named ``notes.txt`` is
skipped as "not a media file".

Not walked at all: hidden files and folders (``.DS_Store``, AppleDouble
``._clip.mp4``, the job folder ``.vapsr-batch``), DST when it lies inside SRC,
and any folder holding a job folder (an earlier batch's destination). A
symbolic link to a file is followed only when its target lies in the walked
part of SRC; a link leading elsewhere is skipped with a reason, so a batch
reads nothing outside SRC and never reads its own outputs.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from vapsr_video.batch.safety import is_batch_destination, is_hidden, is_within, real
from vapsr_video.errors import InputError

FINGERPRINT_BYTES = 64 * 1024
# Extensions that promise a video: failing to open one is a failure, not a skip.
VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mkv", ".mov", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".m2ts", ".mts", ".wmv",
    ".flv", ".3gp", ".ogv", ".mxf", ".vob", ".dv", ".y4m", ".nut",
})
# Containers the output can be written in while keeping the input's extension.
WRITABLE_EXTENSIONS = frozenset({".mp4", ".m4v", ".mkv", ".mov", ".webm", ".nut", ".ts", ".m2ts", ".mts"})
DEFAULT_OUTPUT_EXTENSION = ".mkv"  # holds any stream an unusual source carries


@dataclass(frozen=True)
class ProbeResult:
    """What a quick look at a file found: ``kind`` is "video", "skip" or "bad"; for a
    video, its duration and frame count when the container states or implies them."""

    kind: str
    reason: str | None = None
    duration: float | None = None
    est_frames: int | None = None


@dataclass(frozen=True)
class SourceFile:
    path: Path
    rel_path: str  # POSIX-style, relative to SRC: the key of its job
    output: Path
    size: int
    skip_reason: str | None = None  # set when the file is walked but must not be read (a link out of SRC)


def matches(rel_path: str, patterns: Sequence[str]) -> bool:
    """A glob matches the path relative to SRC or the bare file name; ``*`` crosses folders."""
    name = rel_path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(rel_path, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def output_path_for(rel_path: str, dst: Path, output_extension: str | None = None) -> Path:
    """The mirrored output path: same folders and name; the extension is kept when the
    container can be written, else ``output_extension`` (default .mkv) is appended."""
    relative = Path(rel_path)
    if output_extension:
        suffix = output_extension if output_extension.startswith(".") else "." + output_extension
        return dst / relative.with_suffix(suffix) if relative.suffix else dst / (rel_path + suffix)
    if relative.suffix.lower() in WRITABLE_EXTENSIONS:
        return dst / relative
    return dst / (rel_path + DEFAULT_OUTPUT_EXTENSION)


def walk_sources(src: Path, dst: Path, *, include: Sequence[str] = (), exclude: Sequence[str] = (),
                 output_extension: str | None = None) -> Iterator[SourceFile]:
    """Regular files under ``src`` in a stable order, minus excluded ones, hidden ones, and
    anything under ``dst`` or an earlier batch's destination (outputs must not feed a batch)."""
    src = real(src)
    dst_resolved = real(dst)
    for folder, subfolders, files in os.walk(src):
        here = Path(folder)
        subfolders[:] = sorted(
            name for name in subfolders
            if not is_hidden(name) and real(here / name) != dst_resolved
            and not is_batch_destination(here / name)
        )
        for name in sorted(files):
            if is_hidden(name):
                continue
            path = here / name
            rel_path = path.relative_to(src).as_posix()
            if include and not matches(rel_path, include):
                continue
            if exclude and matches(rel_path, exclude):
                continue
            try:
                stat = path.stat()
            except OSError:
                continue  # vanished or a dangling link
            if not path.is_file():
                continue
            output = output_path_for(rel_path, dst, output_extension)
            skip_reason = None
            if path.is_symlink():
                target = real(path)
                if not is_within(target, src) or is_within(target, dst_resolved):
                    skip_reason = f"a symbolic link to {target}, outside the folders walked in SRC"
            yield SourceFile(path, rel_path, output, stat.st_size, skip_reason)


def fingerprint(path: Path, options_digest: str) -> str:
    """Size, modification time and a hash of the first and last 64 KiB, plus the
    options: a change in any of them means the output must be made again."""
    try:
        stat = path.stat()
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            digest.update(handle.read(FINGERPRINT_BYTES))
            if stat.st_size > FINGERPRINT_BYTES:
                handle.seek(max(FINGERPRINT_BYTES, stat.st_size - FINGERPRINT_BYTES))
                digest.update(handle.read(FINGERPRINT_BYTES))
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    return f"{stat.st_size}:{stat.st_mtime_ns}:{digest.hexdigest()[:32]}:{options_digest}"


def probe(path: Path) -> ProbeResult:
    """Classify one file from its demuxer headers, nothing decoded, by the rules of the
    single-file command (``vapsr_video.video.probe``): its choice of the main video
    stream (cover pictures are not video) and its still-image formats.

    A ``"bad"`` result's reason is a whole message naming the file; a ``"skip"``
    result's is a short reason.
    """
    from vapsr_video.video.probe import describe, main_video_stream, open_input

    promises_video = path.suffix.lower() in VIDEO_EXTENSIONS
    try:
        size = path.stat().st_size
    except OSError as exc:
        return ProbeResult("bad", f"{path}: cannot read ({exc.strerror})")
    if size == 0:
        return ProbeResult("bad", f"{path}: empty file") if promises_video else ProbeResult("skip", "empty file")
    try:
        container = open_input(path)
    except InputError as exc:
        return ProbeResult("bad", str(exc)) if promises_video else ProbeResult("skip", "not a media file")
    with contextlib.closing(container):
        try:
            info = describe(container, main_video_stream(container, path), path)
        except InputError:
            return ProbeResult("skip", "no video stream")
    if info.is_image:
        return ProbeResult("skip", "a still image (upscale images with 'vapsr-video IN OUT')")
    return ProbeResult("video", None, info.duration or None, info.frames or None)
