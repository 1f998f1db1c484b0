"""Errors a user can act on, each with the exit code the command line returns for it.

Front ends catch :class:`VapsrError` and print its message as one line; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class ExitCode:
    """Documented exit codes of the ``vapsr-video`` command."""

    OK = 0
    FAILED = 1  # an unexpected failure, or (batch) at least one file failed
    USAGE = 2  # bad command-line arguments (argparse's own code)
    BAD_INPUT = 3  # unreadable, empty, truncated or non-media input
    BAD_OUTPUT = 4  # output exists, is the input, cannot be written, disk full
    BAD_WEIGHTS = 5  # a weights file that is not a usable VapSR checkpoint
    HANGUP = 129  # the terminal went away (128 + SIGHUP)
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
    TERMINATED = 143  # asked to stop, e.g. by kill or a service manager (128 + SIGTERM)


class VapsrError(Exception):
    """Base class: a problem the user caused or can fix; the message is shown as is."""

    exit_code: int = ExitCode.FAILED


class WeightsError(VapsrError):
    """A weights file is missing, unreadable or not a VapSR checkpoint."""

    exit_code = ExitCode.BAD_WEIGHTS


class InputError(VapsrError):
    """An input file cannot be used."""

    exit_code = ExitCode.BAD_INPUT


class OutputError(VapsrError):
    """The output cannot be written where the user asked."""

    exit_code = ExitCode.BAD_OUTPUT


class UsageError(VapsrError):
    """Options that contradict each other or the machine (e.g. fp16 on a CPU)."""

    exit_code = ExitCode.USAGE


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread so that it stops the same clean way as Ctrl-C.

    A subclass of :class:`KeyboardInterrupt`, so every ``except KeyboardInterrupt`` cleanup
    applies to it too; ``exit_code`` is 128 + the signal number.
    """

    def __init__(self, signum: int, name: str) -> None:
        super().__init__(name)
        self.signum = signum
        self.name = name
        self.exit_code = 128 + signum


STOP_SIGNALS = {"SIGTERM": "terminated", "SIGHUP": "hung up"}  # signal name -> what the one-line message says


def terminated(signum: int) -> Terminated:
    """The :class:`Terminated` that stands for ``signum``, with its one-line message."""
    import signal

    return Terminated(signum, STOP_SIGNALS.get(signal.Signals(signum).name, "stopped"))


def raise_terminated(signum: int, frame: object) -> None:
    """A signal handler: raise :class:`Terminated` for ``signum`` in the main thread."""
    raise terminated(signum)
