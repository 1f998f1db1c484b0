"""``vapsr-video``: the command-line front end.

``vapsr-video IN OUT [options]`` upscales a video or an image; the subcommands
``eval``, ``batch`` and ``train`` live in their own modules and are imported
only when used, so a plain upscale starts fast; ``--version`` imports nothing
else at all.

One signal policy for every subcommand: SIGINT (Ctrl-C), SIGTERM and SIGHUP all
become an exception in the main thread, so the running job tells its threads to
stop, waits for them, removes its temporary files, and the command exits with
128 + the signal number (130, 143, 129) after a one-line message.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import NoReturn

from vapsr_video.errors import STOP_SIGNALS, ExitCode, Terminated, VapsrError, raise_terminated
from vapsr_video.host_memory import retain_freed_memory

SUBCOMMANDS: dict[str, str] = {
    "eval": "vapsr_video.cli.evaluate",
    "batch": "vapsr_video.cli.batch",
    "train": "vapsr_video.cli.train",
    "weights": "vapsr_video.cli.weights",
    "export": "vapsr_video.cli.export",
}
PROG = "vapsr-video"


def report_error(message: str) -> None:
    """One line on stderr, the way every front end reports a user-facing error."""
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)


def install_signal_policy() -> None:
    """SIGTERM and SIGHUP raise :class:`Terminated` in the main thread, as SIGINT raises KeyboardInterrupt.

    A signal the parent set to be ignored (``nohup`` ignores SIGHUP) stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for name in STOP_SIGNALS:
        number = getattr(signal, name, None)
        if number is not None and signal.getsignal(number) is not signal.SIG_IGN:
            signal.signal(number, raise_terminated)


def run_guarded(command: Callable[[Sequence[str]], int], argv: Sequence[str]) -> int:
    """Run ``command``, turning expected failures into a message and an exit code."""
    try:
        return command(argv)
    except VapsrError as exc:
        report_error(str(exc))
        return exc.exit_code
    except Terminated as exc:
        report_error(exc.name)
        return exc.exit_code
    except KeyboardInterrupt:
        report_error("interrupted")
        return ExitCode.INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        from vapsr_video import __version__

        print(f"{PROG} {__version__}")
        return ExitCode.OK
    install_signal_policy()
    if args and args[0] in SUBCOMMANDS:
        module = importlib.import_module(SUBCOMMANDS[args[0]])
        return run_guarded(module.main, args[1:])
    from vapsr_video.cli import upscale

    return run_guarded(upscale.main, args)


def entry() -> NoReturn:
    """The ``vapsr-video`` command: :func:`main`, then an exit without interpreter finalisation.

    By the time :func:`main` returns, every output is closed, synced and renamed, every
    worker thread has ended and the exit code is decided. Native libraries can still
    hold threads of their own (PyTorch's pools, the decoders' and encoders'); tearing
    the interpreter and their static objects down around them can end a finished run in
    ``std::terminate`` (SIGABRT, exit 134). So the command flushes its streams and logs
    and leaves with the code the run chose. (``main`` itself returns normally, for
    callers in Python.)
    """
    retain_freed_memory()  # this process is ours: see vapsr_video/host_memory.py
    try:
        code = main()
    except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # e.g. a pipe whose reader has gone
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
