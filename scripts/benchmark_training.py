#!/usr/bin/env python3
"""Time a VapSR training iteration: the original recipe against the one ``vapsr-video train`` uses now.

Each recipe runs in its own process (the current one changes process-wide settings,
such as how the C library keeps freed memory, which must not leak into the
baseline), on the same random batches, one step at a time in turn, so that other
load on the machine hits both alike; prints the median milliseconds per iteration
of each and the ratio. An iteration is forward, L1 loss, backward, Adam step and
EMA update (the data path is the same for both and not timed).

    python scripts/benchmark_training.py --model vapsr --scale 2 --batch-size 16 --patch 48 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from multiprocessing.connection import Connection

import torch
from side_by_side import run_side_by_side
from torch.nn import functional as F
from training_iteration import TrainerIteration, random_batch

from vapsr_video.model.vapsr import VARIANTS, VapSR, published_config
from vapsr_video.training.trainer import precision_summary


class BaselineStep:
    """The recipe before the speed-up: stock modules, NCHW input, per-parameter Adam and EMA loops."""

    def __init__(self, model: VapSR, ema: VapSR) -> None:
        self.model, self.ema = model, ema
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.99), foreach=False)

    def __call__(self, lr_batch: torch.Tensor, hr_batch: torch.Tensor) -> None:
        loss = F.l1_loss(self.model(lr_batch), hr_batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            for ema_param, param in zip(self.ema.parameters(), self.model.parameters(), strict=True):
                ema_param.lerp_(param, 1 - 0.999)


def side_worker(connection: Connection, name: str, args: argparse.Namespace) -> None:
    """One recipe in its own process: build it, then run one timed step per request."""
    if args.threads:
        torch.set_num_threads(args.threads)
    config = published_config(args.model, args.scale)
    if name == "baseline":
        torch.manual_seed(0)
        model = VapSR(config)
        step = BaselineStep(model, copy.deepcopy(model))
    else:
        step = TrainerIteration(config, fast_kernels=not args.no_fast_kernels, bf16=not args.fp32)
    generator = torch.Generator().manual_seed(0)
    batches = [random_batch(config, args.batch_size, args.patch, generator) for _ in range(2)]
    connection.send(torch.get_num_threads())
    iteration = 0
    while connection.recv() == "go":
        start = time.perf_counter()
        step(*batches[iteration % 2])
        connection.send(time.perf_counter() - start)
        iteration += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=VARIANTS, default="vapsr")
    parser.add_argument("--scale", type=int, choices=(2, 3, 4), default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch", type=int, default=48, help="LR patch size")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--iterations", type=int, default=8, help="timed iterations of each (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=4,
                        help="untimed iterations of each first (allocation and kernel choice)")
    parser.add_argument("--no-fast-kernels", action="store_true",
                        help="optimised side without the custom depthwise backward (to see what it alone brings)")
    parser.add_argument("--fp32", action="store_true",
                        help="optimised side in float32 throughout, as `vapsr-video train --fp32`")
    args = parser.parse_args()
    run = run_side_by_side(side_worker, ("baseline", "optimised"), args, args.warmup, args.iterations)
    timings: dict[str, list[float]] = run.measurements
    print(f"{args.model} x{args.scale}, batch {args.batch_size}, LR patch {args.patch}, "
          f"{run.described['optimised']} thread(s), torch {torch.__version__}, {args.iterations} timed iterations "
          f"each, optimised side in {precision_summary(torch.device('cpu'), not args.fp32)}, "
          f"load average {run.load_before:.2f} -> {run.load_after:.2f}")
    medians = {name: statistics.median(values) * 1000 for name, values in timings.items()}
    for name, values in timings.items():
        print(f"{name:>9}: median {medians[name]:7.0f} ms/iteration "
              f"(min {min(values) * 1000:.0f}, max {max(values) * 1000:.0f})")
    print(f"speed-up: {medians['baseline'] / medians['optimised']:.2f}x")


if __name__ == "__main__":
    main()
