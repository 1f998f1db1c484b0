#!/usr/bin/env python3
"""Time VapSR's dilated depthwise convolution on the CPU: oneDNN's own path against the phase split.

On CPUs without AVX-512, oneDNN's depthwise convolution is fast undilated and slow
dilated; ``vapsr_video.model.phase_split`` computes the dilated one as an undilated
one over d*d phase images. Three measurements, each side alternating with the other
so that other load on the machine hits both alike (medians):

1. the 5x5 convolution dilated by 3 alone, on a channels-last training-shaped tensor;
2. the whole model, inference only, fp32 (what ``Upscaler`` runs on the CPU), and
   whether both give identical pixels;
3. one training iteration as ``vapsr-video train`` runs it (forward, L1 loss,
   backward with the custom depthwise backward, Adam, EMA), fp32.

    python scripts/benchmark_phase_split.py --model vapsr-s --scale 4 --threads 2
"""

from __future__ import annotations

import argparse
import copy
from contextlib import contextmanager
from functools import partial

import torch
from side_by_side import alternate, start_cpu_benchmark
from torch.nn import functional as F
from training_iteration import TrainerIteration, random_batch

from vapsr_video.model.phase_split import phase_split_depthwise, use_phase_split
from vapsr_video.model.vapsr import VARIANTS, published_config
from vapsr_video.model.weights import load_model
from vapsr_video.training import fast_depthwise


def onednn_depthwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, pad: int,
                     dilation: int) -> torch.Tensor:
    return F.conv2d(x, weight, bias, 1, pad, dilation, weight.shape[0])


@contextmanager
def training_on_onednn():
    """The training kernels as they were before the phase split: every depthwise convolution by oneDNN."""
    original = fast_depthwise.depthwise_same
    fast_depthwise.depthwise_same = onednn_depthwise
    try:
        yield
    finally:
        fast_depthwise.depthwise_same = original


def report(title: str, medians: dict[str, float]) -> None:
    (slow_name, slow), (fast_name, fast) = medians.items()
    print(f"{title}: {slow_name} {slow:.1f} ms, {fast_name} {fast:.1f} ms, speed-up {slow / fast:.2f}x")


def convolution_alone(args: argparse.Namespace, channels: int) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, channels, args.patch, args.patch, generator=generator)
    x = x.contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(channels, 1, 5, 5, generator=generator), torch.randn(channels, generator=generator)
    difference = (phase_split_depthwise(x, weight, bias, 3) - onednn_depthwise(x, weight, bias, 6, 3)).abs().max()
    medians = alternate({"oneDNN": lambda: onednn_depthwise(x, weight, bias, 6, 3),
                         "phase split": lambda: phase_split_depthwise(x, weight, bias, 3)}, args.warmup, args.passes)
    report(f"5x5 dilated by 3 on {args.batch_size}x{channels}x{args.patch}x{args.patch} channels-last", medians)
    print(f"  largest difference {difference.item():.2g}")


def inference(args: argparse.Namespace) -> None:
    stock = load_model(args.weights, variant=args.model, scale=args.scale).eval().requires_grad_(False)
    split = copy.deepcopy(stock)
    use_phase_split(split)
    frames = torch.rand(args.frames, 3, args.height, args.width, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        identical = torch.equal(stock(frames), split(frames))
        medians = alternate({"oneDNN": lambda: stock(frames), "phase split": lambda: split(frames)},
                            args.warmup, args.passes)
    report(f"model only, {args.model} x{stock.scale}, {args.frames} x {args.width}x{args.height}, fp32", medians)
    print(f"  identical pixels: {'yes' if identical else 'no'}")


def training(args: argparse.Namespace) -> None:
    config = published_config(args.model, args.scale)
    batch = random_batch(config, args.batch_size, args.patch, torch.Generator().manual_seed(2))
    sides = {"oneDNN": TrainerIteration(config, around=training_on_onednn), "phase split": TrainerIteration(config)}
    medians = alternate({name: partial(side, *batch) for name, side in sides.items()}, 1, max(2, args.passes // 2))
    report(f"training iteration, {args.model} x{config.scale}, batch {args.batch_size}, LR patch {args.patch}, "
           "fp32", medians)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=VARIANTS, default="vapsr-s")
    parser.add_argument("--scale", type=int, choices=(2, 3, 4), default=None,
                        help="default: 4 for vapsr-s, 2 for vapsr")
    parser.add_argument("--weights", help="weights file or model name (default: the bundled model)")
    parser.add_argument("--width", type=int, default=320, help="LR frame width for the model-only pass")
    parser.add_argument("--height", type=int, default=180)
    parser.add_argument("--frames", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16, help="training batch")
    parser.add_argument("--patch", type=int, default=64, help="training LR patch size")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--passes", type=int, default=6, help="timed calls of each side")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls of each side first")
    parser.add_argument("--skip-training", action="store_true", help="only the convolution and the model")
    args = parser.parse_args()
    args.scale = args.scale or (4 if args.model == "vapsr-s" else 2)
    start_cpu_benchmark(args.threads)
    convolution_alone(args, published_config(args.model, args.scale).d_atten)
    inference(args)
    if not args.skip_training:
        training(args)


if __name__ == "__main__":
    main()
