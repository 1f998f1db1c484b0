#!/usr/bin/env python3
"""CPU inference with glibc's default allocator settings against ``retain_freed_memory()``.

Two processes (the setting is process-wide) run the same forward passes of the
bundled model over the same batch of frames, one pass at a time in turn, so that
other load on the machine hits both alike; prints the median and fastest pass
and the page faults per pass of each.

    python scripts/benchmark_host_memory.py --scale 2 --batch 4 --height 90 --width 160 --threads 2
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from multiprocessing.connection import Connection

from side_by_side import run_side_by_side

SIDES = ("glibc defaults", "retain_freed_memory")


def side_worker(connection: Connection, name: str, args: argparse.Namespace) -> None:
    import torch

    from vapsr_video.host_memory import retain_freed_memory
    from vapsr_video.model.weights import bundled_weights_path, load_model

    if name == "retain_freed_memory":
        retain_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(bundled_weights_path("vapsr", args.scale)).eval()
    frames = torch.rand(args.batch, 3, args.height, args.width, generator=torch.Generator().manual_seed(0))
    connection.send(torch.get_num_threads())
    with torch.inference_mode():
        while connection.recv() == "go":
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            model(frames)
            connection.send((time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, choices=(2, 3, 4), default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--height", type=int, default=90)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--passes", type=int, default=12, help="timed passes of each (after 2 untimed)")
    args = parser.parse_args()
    run = run_side_by_side(side_worker, SIDES, args, 2, args.passes)
    results: dict[str, list[tuple[float, int]]] = run.measurements
    print(f"bundled x{args.scale}, {args.batch} x {args.width}x{args.height} frames, fp32, "
          f"{run.described[SIDES[1]]} thread(s), {args.passes} timed passes each, "
          f"load average {run.load_before:.2f} -> {run.load_after:.2f}")
    medians = {}
    for name, values in results.items():
        seconds = [s for s, _ in values]
        medians[name] = statistics.median(seconds) * 1000
        print(f"{name:>20}: median {medians[name]:6.0f} ms/pass (min {min(seconds) * 1000:.0f}), "
              f"page faults per pass: median {statistics.median(f for _, f in values):.0f}")
    print(f"speed-up: {medians[SIDES[0]] / medians[SIDES[1]]:.2f}x")


if __name__ == "__main__":
    main()
