"""Running a batch's units on this machine: one thread per device, each with its own model.

Threads (not processes) because the heavy parts (decoding, the network, encoding)
release the GIL, a kill -9 of the batch takes every worker with it (no orphan
keeps a lease alive), and Ctrl-C reaches one place that stops them all.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable

import torch

from vapsr_video.batch.dispatch import Done, Unit, Worker
from vapsr_video.batch.tasks import Finished, Planned, UnitSettings, forget_failure, run_unit
from vapsr_video.inference.cuda_support import use_device_in_this_thread
from vapsr_video.inference.devices import parse_device_list
from vapsr_video.inference.options import ModelOptions
from vapsr_video.inference.upscaler import Upscaler


class Cancelled(Exception):
    """Raised from a progress callback to stop the unit in flight (Ctrl-C, SIGTERM)."""


def share_cpu_threads(devices: list[str]) -> None:
    """Several CPU workers split the cores instead of all using every core."""
    cpu_workers = sum(1 for device in devices if device == "cpu")
    if cpu_workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // cpu_workers))


class _WorkerThread(threading.Thread):
    """Runs the units it is given, one at a time, and posts each end to ``results``."""

    def __init__(self, name: str, upscaler: Upscaler, settings: UnitSettings, results: queue.SimpleQueue[Done],
                 stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self.upscaler = upscaler
        self.settings = settings
        self.results = results
        self.stop = stop
        self.inbox: queue.SimpleQueue[tuple[Unit, Callable[[int], None]] | None] = queue.SimpleQueue()
        # Waited on instead of join(): a Ctrl-C landing inside Thread.join() can mark a live
        # thread as finished (CPython bpo-45274 handling), and the stop would not wait for it.
        self.idle = threading.Event()
        self.idle.set()

    def run(self) -> None:
        use_device_in_this_thread(self.upscaler.device)  # before anything here touches CUDA
        while (item := self.inbox.get()) is not None:
            unit, frames_done = item

            def progress(count: int, frames_done: Callable[[int], None] = frames_done) -> None:
                if self.stop.is_set():
                    raise Cancelled
                frames_done(count)

            outcome: Finished | Planned | BaseException
            try:
                outcome = run_unit(unit.claim, self.settings, self.upscaler, unit.segment_count, progress)
            except BaseException as exc:  # recorded by the loop: a unit's failure must not kill the worker
                outcome = forget_failure(exc, self.upscaler.device)
            self.idle.set()
            self.results.put(Done(self.name, outcome))


class LocalBackend:
    """One worker per entry of a device list (``cuda:0,cuda:1``, ``cuda``, ``cpu,cpu``; see
    :func:`parse_device_list`); without one, the model's device or every visible GPU."""

    reports_frames = True

    def __init__(self, devices: str | None = None) -> None:
        self.devices = devices
        self._threads: dict[str, _WorkerThread] = {}
        self._workers: list[Worker] = []
        self._results: queue.SimpleQueue[Done] = queue.SimpleQueue()
        self._stop = threading.Event()

    def start(self, model: ModelOptions, settings: UnitSettings) -> list[Worker]:
        devices = parse_device_list(self.devices, model.device)
        share_cpu_threads(devices)
        upscalers = {f"w{index}@{device}": model.build(device) for index, device in enumerate(devices, start=1)}
        for name, upscaler in upscalers.items():
            thread = _WorkerThread(name, upscaler, settings, self._results, self._stop)
            self._threads[name] = thread
            self._workers.append(Worker(name, str(upscaler.device)))
            thread.start()
        return list(self._workers)

    def workers(self) -> list[Worker]:
        return list(self._workers)

    def submit(self, worker: str, unit: Unit, frames_done: Callable[[int], None]) -> None:
        thread = self._threads[worker]
        thread.idle.clear()
        thread.inbox.put((unit, frames_done))

    def wait(self, timeout: float) -> list[Done]:
        try:
            ended = [self._results.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                ended.append(self._results.get_nowait())
            except queue.Empty:
                return ended

    def cancel(self) -> None:
        self._stop.set()
        for thread in self._threads.values():
            thread.idle.wait()

    def close(self) -> None:
        for thread in self._threads.values():
            thread.inbox.put(None)
