#!/usr/bin/env python3
"""Time the depthwise weight gradient of training on the CPU: PyTorch's own against the C kernel's builds.

The C kernel (``vapsr_video/training/depthwise_grad.c``) keeps 2 x kernel-size
vectors of partial sums in registers. Its vector width is chosen at compile time:
16 lanes where the compiler targets AVX-512, 8 elsewhere, because 16-lane vectors
on an AVX2-only CPU need more registers than it has. This script builds the kernel
both ways (plus whatever the trainer's own build is), checks each against
PyTorch's gradient, and times, each side alternating with the others (medians):

1. one weight gradient on a channels-last training-shaped tensor, undilated and
   dilated as VapSR's two depthwise convolutions are;
2. one training iteration as ``vapsr-video train`` runs it (forward, L1 loss,
   backward, Adam, EMA; fp32) with each build of the kernel.

    python scripts/benchmark_depthwise_grad.py --model vapsr-s --scale 4 --threads 2
"""

from __future__ import annotations

import argparse
import ctypes
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import torch
from side_by_side import alternate, start_cpu_benchmark
from training_iteration import TrainerIteration, random_batch

from vapsr_video.model.vapsr import VARIANTS, published_config
from vapsr_video.training import fast_depthwise
from vapsr_video.training.fast_depthwise import native_weight_grad
from vapsr_video.training.native import compile_kernel, depthwise_kernel, find_compiler, load_kernel


def build_variants(scratch: Path) -> dict[str, ctypes.CDLL]:
    """The kernel built with 16-lane and with 8-lane vectors, and the trainer's own build."""
    compiler = find_compiler()
    if compiler is None:
        raise SystemExit("benchmark_depthwise_grad: no C compiler found (set CC)")
    builds = {}
    for lanes in (16, 8):
        path = scratch / f"depthwise_grad_{lanes}.so"
        compile_kernel(compiler, path, (f"-DLANES={lanes}",))
        builds[f"C, {lanes} lanes"] = load_kernel(path)
    trainers = depthwise_kernel()
    if trainers is None:
        raise SystemExit("benchmark_depthwise_grad: the trainer's kernel could not be built")
    builds["trainer's build"] = trainers
    return builds


def pytorch_weight_grad(x: torch.Tensor, grad_out: torch.Tensor, weight: torch.Tensor, pad: int,
                        dilation: int) -> torch.Tensor:
    return torch.ops.aten.convolution_backward(
        grad_out, x, weight, None, [1, 1], [pad, pad], [dilation, dilation], False, [0, 0], weight.shape[0],
        [False, True, False])[1]


def report(title: str, medians: dict[str, float], notes: dict[str, str] | None = None) -> None:
    """One line per side: median time, speed-up over the first side, and any note."""
    baseline_name, baseline = next(iter(medians.items()))
    print(f"{title} (speed-up over {baseline_name}):")
    for name, milliseconds in medians.items():
        note = f", {notes[name]}" if notes and name in notes else ""
        print(f"  {name}: {milliseconds:.1f} ms, {baseline / milliseconds:.2f}x{note}")


def weight_gradient_alone(args: argparse.Namespace, builds: dict[str, ctypes.CDLL], channels: int) -> None:
    generator = torch.Generator().manual_seed(0)
    shape = (args.batch_size, channels, args.patch, args.patch)
    x = torch.randn(*shape, generator=generator).contiguous(memory_format=torch.channels_last)
    grad_out = torch.randn(*shape, generator=generator).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(channels, 1, 5, 5, generator=generator)
    for dilation in (1, 3):
        pad = 2 * dilation
        expected = pytorch_weight_grad(x, grad_out, weight, pad, dilation)
        sides: dict[str, Callable[[], object]] = {
            "PyTorch": lambda p=pad, d=dilation: pytorch_weight_grad(x, grad_out, weight, p, d)}
        notes = {}
        for name, library in builds.items():
            got = native_weight_grad(library, x, grad_out, 5, pad, dilation)
            error = ((got - expected).abs().max() / expected.abs().max()).item()
            notes[name] = (f"{library.vapsr_depthwise_lanes()} lanes, largest difference from PyTorch "
                           f"{error:.1e} of the largest gradient")
            sides[name] = lambda lib=library, p=pad, d=dilation: native_weight_grad(lib, x, grad_out, 5, p, d)
        report(f"weight gradient, 5x5 dilated by {dilation}, {'x'.join(map(str, shape))} channels-last",
               alternate(sides, args.warmup, args.passes), notes)


@contextmanager
def kernel_swapped_for(library: ctypes.CDLL) -> Iterator[None]:
    """The trainer's depthwise backward calling ``library`` instead of its own build."""
    original = fast_depthwise.depthwise_kernel
    fast_depthwise.depthwise_kernel = lambda: library
    try:
        yield
    finally:
        fast_depthwise.depthwise_kernel = original


def training(args: argparse.Namespace, builds: dict[str, ctypes.CDLL]) -> None:
    config = published_config(args.model, args.scale)
    batch = random_batch(config, args.batch_size, args.patch, torch.Generator().manual_seed(2))
    sides = {name: partial(TrainerIteration(config, around=partial(kernel_swapped_for, library)), *batch)
             for name, library in builds.items() if name != "trainer's build"}
    report(f"training iteration, {args.model} x{config.scale}, batch {args.batch_size}, LR patch {args.patch}, fp32",
           alternate(sides, 1, max(2, args.passes // 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=VARIANTS, default="vapsr-s")
    parser.add_argument("--scale", type=int, choices=(2, 3, 4), default=None,
                        help="default: 4 for vapsr-s, 2 for vapsr")
    parser.add_argument("--batch-size", type=int, default=16, help="training batch")
    parser.add_argument("--patch", type=int, default=64, help="training LR patch size")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--passes", type=int, default=10, help="timed calls of each side")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls of each side first")
    parser.add_argument("--skip-training", action="store_true", help="only the weight gradient alone")
    args = parser.parse_args()
    args.scale = args.scale or (4 if args.model == "vapsr-s" else 2)
    start_cpu_benchmark(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        builds = build_variants(Path(scratch))
        weight_gradient_alone(args, builds, published_config(args.model, args.scale).d_atten)
        if not args.skip_training:
            training(args, builds)


if __name__ == "__main__":
    main()
