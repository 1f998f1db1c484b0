"""Run variants of a measurement one round at a time in turn, so that any other load on the machine hits all alike.

``alternate`` runs them in this process; ``run_side_by_side`` in their own processes,
for benchmarks whose variants differ in process-wide settings (allocator, threads),
which must not leak from one into the other.

A worker is ``worker(connection, name, args)``: it sets itself up, sends one
description of itself (e.g. its thread count), then answers each ``"go"`` with one
measurement, until it receives ``"stop"``.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any


def start_cpu_benchmark(threads: int) -> None:
    """Set torch's thread count (0: its choice), keep freed memory as the command and the trainer do
    (page faults would blur every side), and print what the figures were measured with."""
    import torch

    from vapsr_video.host_memory import retain_freed_memory

    if threads:
        torch.set_num_threads(threads)
    retain_freed_memory()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"load average {os.getloadavg()[0]:.2f}")


def alternate(sides: dict[str, Callable[[], object]], warmup: int, passes: int) -> dict[str, float]:
    """Median milliseconds per call of each side, the sides taking turns in this process."""
    for _ in range(warmup):
        for run in sides.values():
            run()
    timings: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(passes):
        for name, run in sides.items():
            start = time.perf_counter()
            run()
            timings[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) * 1000 for name, values in timings.items()}


@dataclass
class SideBySide:
    described: dict[str, Any]  # what each worker sent after setting up
    measurements: dict[str, list[Any]]  # the timed rounds, per worker
    load_before: float  # 1-minute load average before the first round
    load_after: float


def run_side_by_side(worker: Callable[[Connection, str, Any], None], names: Sequence[str], args: Any,
                     untimed: int, timed: int) -> SideBySide:
    """Start one spawned process per name, run ``untimed`` then ``timed`` rounds, and stop them."""
    context = multiprocessing.get_context("spawn")
    connections: dict[str, Connection] = {}
    described: dict[str, Any] = {}
    processes = []
    for name in names:
        ours, theirs = context.Pipe()
        process = context.Process(target=worker, args=(theirs, name, args), daemon=True)
        process.start()
        connections[name], described[name] = ours, ours.recv()
        processes.append(process)
    load_before = os.getloadavg()[0]
    measurements: dict[str, list[Any]] = {name: [] for name in names}
    for index in range(untimed + timed):
        for name in names:
            connections[name].send("go")
            result = connections[name].recv()
            if index >= untimed:
                measurements[name].append(result)
    for name in names:
        connections[name].send("stop")
    for process in processes:
        process.join()
    return SideBySide(described, measurements, load_before, os.getloadavg()[0])
