"""Writing an output file so that it appears at its final path only when complete.

The data goes to a hidden temporary file in the same folder (so the final
``os.replace`` is an atomic rename on the same file system); on any failure,
Ctrl-C included, the temporary file is removed and the final path is untouched.
"""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def atomic_output(output_path: str | Path, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``output_path``; rename it into place on success.

    The temporary name keeps the output's extension so that muxers and encoders
    that choose a format from the name still do.
    """
    target = Path(output_path)
    try:
        handle, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=target.suffix, dir=target.parent or ".")
    except OSError as exc:
        raise OutputError(f"{target}: cannot create a file in {target.parent or '.'} ({exc.strerror})") from None
    os.close(handle)
    temporary = Path(name)
    # mkstemp makes the file private (0600); give it the mode a normal file would get.
    os.chmod(temporary, default_file_mode())
    try:
        yield temporary
        if fsync:
            with open(temporary, "rb") as written:
                os.fsync(written.fileno())
        os.replace(temporary, target)
        if fsync:
            with contextlib.suppress(OSError):
                folder = os.open(target.parent or ".", os.O_RDONLY)
                try:
                    os.fsync(folder)
                finally:
                    os.close(folder)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
