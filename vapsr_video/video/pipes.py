"""``-`` as input (standard input) or output (standard output), for ``ffmpeg ... | vapsr-video - - | ...``.

Policy (docs/video.md): a pipe cannot be published atomically, so output to standard
output streams as it is encoded; on failure the stream is cut where it stands, an
error is printed on stderr and the exit code is non-zero; the reader sees a
truncated stream. The output container must be one that is written front to back
without seeking (``--format mkv|nut|mpegts``); standard output then carries only
the media, and the summary line goes to stderr.
"""

from __future__ import annotations

from pathlib import Path

PIPE = "-"
# --format value -> FFmpeg muxer; all three write their index-free layout on a non-seekable output.
PIPE_FORMATS: dict[str, str] = {"mkv": "matroska", "nut": "nut", "mpegts": "mpegts"}
STDIN_URL = "pipe:0"
STDOUT_URL = "pipe:1"
STDIN_NAME = Path("standard input")  # how messages name the pipes
STDOUT_NAME = Path("standard output")


def is_pipe(path: str | Path | None) -> bool:
    return path is not None and str(path) == PIPE


def pipe_muxer(format_name: str | None) -> str:
    """The muxer for ``--format``, or :class:`UsageError` saying which formats a pipe takes."""
    from vapsr_video.errors import UsageError

    if format_name is None:
        raise UsageError(f"writing to standard output needs --format ({'|'.join(PIPE_FORMATS)}): "
                         "there is no file extension to take it from")
    if format_name not in PIPE_FORMATS:
        raise UsageError(f"--format {format_name} cannot be streamed to a pipe; choose {'|'.join(PIPE_FORMATS)} "
                         "(MP4 and MOV need to seek back to write their index)")
    return PIPE_FORMATS[format_name]
