"""Writing an output file so that it appears at its final path only when complete.

The data goes to a hidden temporary file in the same folder (so the final
rename is atomic on the same file system); on any failure, Ctrl-C included, the
temporary file is removed and the final path is untouched.

:func:`publish` is the one place where a finished file reaches its final path
(every writer of the project goes through it: video and image outputs, batch
outputs and segments, weight files, training checkpoints, evaluation reports).
It alone decides whether an existing file may be replaced.

This module imports nothing of the project but ``errors``, so that every package
(``model/`` included) can use it without an import cycle.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from vapsr_video.errors import OutputError

TEMP_PREFIX = ".vapsr-partial-"
# Read once at import: os.umask can only be read by setting it, which is racy once threads run.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def default_file_mode() -> int:
    """The permissions ``open()`` would give a new file (0o666 less the umask)."""
    return 0o666 & ~_UMASK


def check_output_path(input_path: str | Path, output_path: str | Path, *, overwrite: bool = False) -> Path:
    """Refuse to write over the input, or over an existing file without ``overwrite``."""
    source, target = Path(input_path), Path(output_path)
    if target.exists() and source.exists() and os.path.samefile(source, target):
        raise OutputError(f"{target}: is the input file; choose another output path")
    if target.resolve() == source.resolve():
        raise OutputError(f"{target}: is the input file; choose another output path")
    if target.is_dir():
        raise OutputError(f"{target}: is a folder; give an output file name")
    if target.exists() and not overwrite:
        raise OutputError(f"{target}: already exists; pass --overwrite to replace it")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"{target}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{target}: folder {folder} is not writable")
    return target


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable; some file systems refuse to open or sync a folder, which is no error.
    with contextlib.suppress(OSError):
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def _link_without_replacing(staged: Path, final: Path) -> None:
    """Give ``staged`` the name ``final`` only if nothing has that name (atomic), then drop the staged name."""
    try:
        os.link(staged, final)
    except FileExistsError:
        raise OutputError(f"{final}: already exists; pass --overwrite to replace it") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        # A file system without hard links: check, then rename (not atomic against a racing writer).
        if os.path.lexists(final):
            raise OutputError(f"{final}: already exists; pass --overwrite to replace it") from None
        os.replace(staged, final)
        return
    staged.unlink()


def publish(staged: str | Path, final: str | Path, *, overwrite: bool, fsync: bool = True) -> None:
    """Move the complete file ``staged`` to ``final`` in one atomic step.

    The file gets the permissions a new file normally has (temporary files are
    created private), its data is flushed to disk before the rename and the
    rename after it, so a crash leaves either the old file or the whole new one.
    ``overwrite``: replace an existing ``final``; without it an existing file is
    never touched and :class:`OutputError` says so. ``staged`` must be on the
    same file system as ``final`` (a file beside it, or in a work folder under
    the same root).

    Raises:
        OutputError: ``final`` exists (without ``overwrite``) or cannot be written.
    """
    staged, final = Path(staged), Path(final)
    try:
        os.chmod(staged, default_file_mode())
        if fsync:
            with open(staged, "rb") as written:
                os.fsync(written.fileno())
        if overwrite:
            os.replace(staged, final)
        else:
            _link_without_replacing(staged, final)
    except OSError as exc:
        raise OutputError(f"{final}: cannot write ({exc.strerror or exc})") from None
    if fsync:
        _fsync_folder(final.parent)


@contextlib.contextmanager
def atomic_output(output_path: str | Path, *, overwrite: bool = True, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``output_path``; :func:`publish` it there on success.

    The temporary name keeps the output's extension so that muxers and encoders
    that choose a format from the name still do. ``overwrite`` is passed to
    :func:`publish`: callers that checked the path with :func:`check_output_path`
    pass the same value, so a file that appears in between is not replaced either.
    """
    target = Path(output_path)
    try:
        handle, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=target.suffix, dir=target.parent or ".")
    except OSError as exc:
        raise OutputError(f"{target}: cannot create a file in {target.parent or '.'} ({exc.strerror})") from None
    os.close(handle)
    temporary = Path(name)  # private (0600) until publish gives it a normal file's mode
    try:
        yield temporary
        publish(temporary, target, overwrite=overwrite, fsync=fsync)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
