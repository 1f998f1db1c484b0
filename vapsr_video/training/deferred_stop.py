"""Stop signals that wait for the end of the training iteration in progress, so that the run can checkpoint.

The command line turns SIGINT, SIGTERM and SIGHUP into an exception wherever the
main thread happens to be (``cli/main.py``). In the middle of an optimiser step
that would leave the weights half-updated, and a run stopped that way would lose
everything since its last periodic checkpoint (hours, on a CPU). Inside the
training loop the trainer holds the signal until the iteration is done, saves a
checkpoint and then stops with the exception the signal stands for, so the exit
code is the same. The same signal a second time does not wait.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

from vapsr_video.errors import STOP_SIGNALS, terminated

DEFERRED = ("SIGINT", *STOP_SIGNALS)


def stop_exception(signum: int) -> KeyboardInterrupt:
    """What the command line's policy raises for ``signum``: KeyboardInterrupt, or Terminated."""
    if signum == signal.SIGINT:
        return KeyboardInterrupt()
    return terminated(signum)


class DeferredStop:
    """Within ``with DeferredStop() as stop:``, a stop signal only sets ``stop.signum``; the loop
    checks ``stop.requested`` where stopping is safe. Outside the main thread, or for a signal the
    process ignores (``nohup``), nothing changes."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def exception(self) -> KeyboardInterrupt:
        assert self.signum is not None
        return stop_exception(self.signum)

    def __enter__(self) -> DeferredStop:
        if threading.current_thread() is threading.main_thread():
            for name in DEFERRED:
                number = getattr(signal, name, None)
                if number is None:
                    continue
                previous = signal.getsignal(number)
                if previous is signal.SIG_IGN or previous is None:  # None: a handler set outside Python
                    continue
                self._previous[number] = previous
                signal.signal(number, self._hold)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._restore()

    def _hold(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        elif signum == self.signum:  # asked twice (Ctrl-C, Ctrl-C): stop now, without the checkpoint
            self._restore()
            raise stop_exception(signum)
        # Another kind of stop signal is the same request: Ctrl-C reaches every process of the
        # terminal's group while a parent (scripts/train_gpu.py) also forwards SIGTERM.

    def _restore(self) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)  # type: ignore[arg-type]
        self._previous.clear()
