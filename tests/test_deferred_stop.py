"""The training loop's stop signals: the first waits for the iteration boundary, a second does not."""

from __future__ import annotations

import os
import signal

import pytest

from vapsr_video.errors import Terminated
from vapsr_video.training.deferred_stop import DeferredStop


def test_the_first_signal_is_held_for_the_loop_and_a_second_stops_at_once() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as stopped, DeferredStop() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and isinstance(stop.exception(), Terminated)
        os.kill(os.getpid(), signal.SIGTERM)
        pytest.fail("a second SIGTERM did not stop the loop")
    assert stopped.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) is before, "the process's own handler was not put back"


def test_a_different_stop_signal_while_one_is_held_still_waits_for_the_boundary() -> None:
    with DeferredStop() as stop:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the terminal
        os.kill(os.getpid(), signal.SIGTERM)  # and the parent script passing it on
        assert stop.signum == signal.SIGINT


def test_a_signal_the_process_ignores_stays_ignored() -> None:
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        with DeferredStop() as stop:
            os.kill(os.getpid(), signal.SIGHUP)
            assert not stop.requested
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_a_held_ctrl_c_is_raised_as_keyboard_interrupt() -> None:
    with DeferredStop() as stop:
        os.kill(os.getpid(), signal.SIGINT)
    exception = stop.exception()
    assert type(exception) is KeyboardInterrupt
