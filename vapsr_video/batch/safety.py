"""Source safety: a batch never writes to, or inside, what it reads.

One invariant rather than special cases. Every path a batch writes (outputs,
their work and temporary files, the job database, the log) is compared, after
resolving symbolic links, with the sources it walks:

* DST must differ from SRC and must not contain it (outputs would be walked as
  sources by the next run).
* DST may lie inside SRC only as a folder of its own: one that does not exist
  yet, is empty, or is an earlier batch's destination (it holds ``.vapsr-batch``);
  its subtree is then left out of the walk. A DST inside SRC that already holds
  other files is refused, since those files are sources to the user.
* The job database (``--db``) must not be a source nor lie in the walked part of SRC.
* Every output must resolve to a path inside DST (a symlinked folder under DST
  that leads back into SRC is caught here) and never to a source file.

Names are also made printable here: a file name may hold a newline or another
control character, which must not forge lines in the log or the listings.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from vapsr_video.errors import OutputError, UsageError

STATE_DIR_NAME = ".vapsr-batch"
# Ends every reason that --overwrite resolves; a rerun with --overwrite redoes those files.
OVERWRITE_HINT = "pass --overwrite to replace it"
_PLAIN_EXTENSION = re.compile(r"\.?[A-Za-z0-9][A-Za-z0-9_-]{0,15}")


def real(path: Path) -> Path:
    """``path`` with every symbolic link resolved (the path need not exist)."""
    return Path(os.path.realpath(path))


def is_within(path: Path, folder: Path) -> bool:
    """True when the resolved ``path`` is ``folder`` or lies under it (both already resolved)."""
    return path == folder or folder in path.parents


def is_batch_destination(folder: Path) -> bool:
    """A folder an earlier batch wrote to: it holds the job folder."""
    return (folder / STATE_DIR_NAME).is_dir()


def is_hidden(name: str) -> bool:
    """Hidden files and folders (``.DS_Store``, AppleDouble ``._clip.mp4``, ``.vapsr-batch``) are not walked."""
    return name.startswith(".")


def check_output_extension(extension: str | None) -> None:
    """``--output-ext`` is a bare extension such as ``.mkv``: no folder separators, no dots inside."""
    if extension is not None and not _PLAIN_EXTENSION.fullmatch(extension):
        raise UsageError(f"--output-ext {printable(extension)}: give a plain extension such as .mkv "
                         "(letters and digits, no path)")


def check_folders(src: Path, dst: Path, db_path: Path | None = None) -> None:
    """Refuse a SRC/DST/--db combination where a write could land on a source.

    Raises:
        InputError: SRC is not a folder (raised by the caller's check).
        UsageError: DST equals SRC, contains it, or lies inside it holding other
            files; DST is not a folder; the job database lies among the sources.
    """
    if dst.exists() and not dst.is_dir():
        raise UsageError(f"{dst}: exists and is not a folder")
    src_real, dst_real = real(src), real(dst)
    if src_real == dst_real:
        raise UsageError(f"{dst}: DST must differ from SRC (sources are never written)")
    if is_within(src_real, dst_real):
        raise UsageError(f"{dst}: SRC {src} lies inside DST; outputs would be read back as sources "
                         "(choose a DST outside SRC)")
    if is_within(dst_real, src_real) and dst_real.is_dir() and not is_batch_destination(dst_real) \
            and any(dst_real.iterdir()):
        raise UsageError(f"{dst}: DST lies inside SRC and already holds files of SRC, which could be "
                         "overwritten; choose an empty or new folder, or one outside SRC")
    if db_path is not None:
        db_real = real(db_path)
        if is_within(db_real, src_real) and not is_within(db_real, dst_real):
            raise UsageError(f"--db {db_path}: lies inside SRC; sources are never written "
                             "(put the job database in DST or on another local disk)")


def output_problem(output: Path, dst: Path, sources: set[Path]) -> str | None:
    """Why ``output`` must not be written (it resolves outside DST, or onto a source), or None."""
    resolved = real(output)
    if resolved in sources:
        return f"its output {output} is a source file; refusing to write there"
    if not is_within(resolved, real(dst)):
        return f"its output {output} resolves to {resolved}, outside DST (a symbolic link?); refusing to write there"
    return None


def printable(text: str) -> str:
    """``text`` with control characters (newline, tab, escape, ...) shown as escapes, so a
    file name cannot break a line of the log or of a listing; other characters stay as they are."""
    if text.isprintable():
        return text
    return "".join(character if character.isprintable() else repr(character)[1:-1] for character in text)


def check_publish_target(final: Path, dst: Path, source: Path | None) -> None:
    """The last check before a file reaches ``final``: inside DST and not the source.

    Raises:
        OutputError: ``final`` resolves outside DST or is the source file itself.
    """
    resolved = real(final)
    if not is_within(resolved, real(dst)):
        raise OutputError(f"{final}: resolves to {resolved}, outside DST; refusing to write there")
    if source is not None and resolved == real(source):
        raise OutputError(f"{final}: is the source file; refusing to write there")
