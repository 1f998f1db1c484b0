"""Writing an output file so that it appears at its final path only when complete.

The data goes to a hidden temporary file in the same folder (so the final
rename is atomic on the same file system); on any failure, Ctrl-C included, the
temporary file is removed and the final path is untouched.

A temporary file's name says who made it:
``.vapsr-partial-<host>-<pid>-<start>-<random>-<output name>`` (``host``: a short
hash of the machine's name; ``start``: the process's start time from
``/proc/<pid>/stat``, so a reused pid is not mistaken for the writer). When a
process is killed outright (SIGKILL, power loss) its temporary file stays;
:func:`remove_stale_temporaries`, run before every new output, deletes the ones
in that folder whose process on this machine is gone, and nothing else.

:func:`publish` is the one place where a finished file reaches its final path
(every writer of the project goes through it: video and image outputs, batch
outputs and segments, weight files, training checkpoints, evaluation reports).
It alone decides whether an existing file may be replaced.

This module imports nothing of the project but ``errors``, so that every package
(``model/`` included) can use it without an import cycle.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import logging
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from vapsr_video.errors import OutputError

log = logging.getLogger(__name__)

TEMP_PREFIX = ".vapsr-partial-"
# Room left for the output's own name inside a temporary name (file names are at most 255 bytes).
MAX_NAME_IN_TEMP = 120
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-(?P<start>\d+)-[a-z0-9_]{8}-")
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


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:6]


def _process_start(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux), or None if it is gone or unknown."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count fields after its last ")".
    fields = stat_line.rsplit(")", 1)[-1].split()
    try:
        return int(fields[19])  # field 22 of proc(5)
    except (IndexError, ValueError):
        return None


def _has_proc() -> bool:
    return Path("/proc/self/stat").exists()


def temporary_prefix() -> str:
    """The start of this process's temporary names (the random part and the output name follow)."""
    pid = os.getpid()
    return f"{TEMP_PREFIX}{_host_tag()}-{pid}-{_process_start(pid) or 0}-"


def _writer_is_alive(pid: int, start: int) -> bool:
    if _has_proc():
        return _process_start(pid) == start if start else _process_start(pid) is not None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process: alive
    return True


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files in ``folder`` left by dead processes of this machine; returns them.

    Only regular files named by :func:`atomic_output` are considered, and only those whose
    host tag is this machine's and whose writer (pid and start time) no longer runs: a live
    writer's file, another machine's, and anything else in the folder are left alone.
    """
    removed: list[Path] = []
    host = _host_tag()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None or match["host"] != host:
            continue
        with contextlib.suppress(OSError):
            if not entry.is_file(follow_symlinks=False):
                continue
            if _writer_is_alive(int(match["pid"]), int(match["start"])):
                continue
            os.unlink(entry.path)
            removed.append(Path(entry.path))
            log.info("removed %s, left by an earlier run that was killed", entry.path)
    return removed


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable; some file systems refuse to open or sync a folder, which is no error.
    with contextlib.suppress(OSError):
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def _rename_noreplace(staged: Path, final: Path) -> bool:
    """Linux ``renameat2(RENAME_NOREPLACE)``: True if done, False where the kernel or file system lacks it.

    Raises FileExistsError when ``final`` exists.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError, TypeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(staged), _AT_FDCWD, os.fsencode(final), _RENAME_NOREPLACE) == 0:
        return True
    code = ctypes.get_errno()
    if code == errno.EEXIST:
        raise FileExistsError(code, os.strerror(code), str(final))
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(final))


def _link_without_replacing(staged: Path, final: Path) -> None:
    """Give ``staged`` the name ``final`` only if nothing has that name (atomic), then drop the staged name.

    A hard link does that on every POSIX file system that has them; elsewhere (some network
    and FUSE file systems) ``renameat2(RENAME_NOREPLACE)``; where neither exists, a check
    followed by a rename, which a writer racing in between could still lose to.
    """
    try:
        os.link(staged, final)
    except FileExistsError:
        raise OutputError(f"{final}: already exists; pass --overwrite to replace it") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        try:
            if _rename_noreplace(staged, final):
                return
        except FileExistsError:
            raise OutputError(f"{final}: already exists; pass --overwrite to replace it") from None
        if os.path.lexists(final):
            raise OutputError(f"{final}: already exists; pass --overwrite to replace it") from None
        os.replace(staged, final)
        return
    staged.unlink()


def publish(staged: str | Path, final: str | Path, *, overwrite: bool, fsync: bool = True) -> int:
    """Move the complete file ``staged`` to ``final`` in one atomic step.

    The file gets the permissions a new file normally has (temporary files are
    created private), its data is flushed to disk before the rename and the
    rename after it, so a crash leaves either the old file or the whole new one.
    ``overwrite``: replace an existing ``final``; without it an existing file is
    never touched and :class:`OutputError` says so, even when it appeared while
    ``staged`` was being written (the final step is a no-clobber link or rename,
    not a check followed by a rename). ``staged`` must be on the
    same file system as ``final`` (a file beside it, or in a work folder under
    the same root). Returns the size of the published file in bytes.

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
    try:
        return final.stat().st_size
    except OSError as exc:
        raise OutputError(f"{final}: cannot write ({exc.strerror or exc})") from None


@contextlib.contextmanager
def atomic_output(output_path: str | Path, *, overwrite: bool = True, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``output_path``; :func:`publish` it there on success.

    The temporary name (see the module docstring) ends with the output's name, so
    that muxers and encoders that choose a format from the extension still do; stale
    temporary files of killed earlier runs in the same folder are removed first. ``overwrite`` is passed to
    :func:`publish`: callers that checked the path with :func:`check_output_path`
    pass the same value, so a file that appears in between is not replaced either.
    """
    target = Path(output_path)
    folder = target.parent or Path(".")
    remove_stale_temporaries(folder)
    # The output's name (shortened from the front if long) keeps its extension at the end.
    suffix = "-" + target.name[-MAX_NAME_IN_TEMP:]
    try:
        handle, name = tempfile.mkstemp(prefix=temporary_prefix(), suffix=suffix, dir=folder)
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
