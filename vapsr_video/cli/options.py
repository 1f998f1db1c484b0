"""Argument groups shared by the commands that run the model (upscale, batch, eval)."""

from __future__ import annotations

import argparse

from vapsr_video.inference.devices import PRECISIONS
from vapsr_video.inference.upscaler import DEFAULT_OVERLAP, Upscaler
from vapsr_video.model.vapsr import VARIANTS


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--scale", type=int, choices=(2, 3, 4), default=None,
                       help="upscaling factor (default 2, or the scale of --weights)")
    group.add_argument("--model", choices=VARIANTS, default="vapsr", help="network variant (default vapsr)")
    group.add_argument("--weights", metavar="FILE",
                       help="a VapSR checkpoint (.pth or .safetensors); default: the bundled weights")
    group.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")
    group.add_argument("--precision", choices=tuple(PRECISIONS), default=None,
                       help="arithmetic (default fp16 on CUDA, fp32 on CPU)")
    group.add_argument("--tile", type=int, default=0, metavar="PIXELS",
                       help="process frames in tiles of this size to save memory (default 0: whole frames)")
    group.add_argument("--tile-overlap", type=int, default=DEFAULT_OVERLAP, metavar="PIXELS",
                       help=f"context pixels around each tile (default {DEFAULT_OVERLAP})")


def upscaler_from_arguments(args: argparse.Namespace) -> Upscaler:
    return Upscaler(weights=args.weights, variant=args.model, scale=args.scale, device=args.device,
                    precision=args.precision, tile=args.tile, tile_overlap=args.tile_overlap)
