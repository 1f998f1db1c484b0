"""Argument groups shared by the commands that run the model (upscale, batch, eval),
and the records they turn into: :class:`ModelOptions` and ``EncodeOptions``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from vapsr_video.choices import DEFAULT_TILE_OVERLAP as DEFAULT_OVERLAP
from vapsr_video.choices import ENGINES, PRECISION_NAMES, SCALES, VARIANTS
from vapsr_video.errors import UsageError

if TYPE_CHECKING:
    from vapsr_video.inference.options import ModelOptions
    from vapsr_video.video.encoder import EncodeOptions


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--scale", type=int, choices=SCALES, default=None,
                       help="upscaling factor (default 2, or the scale of --weights)")
    group.add_argument("--model", choices=VARIANTS, default="vapsr", help="network variant (default vapsr)")
    group.add_argument("--weights", metavar="FILE|NAME",
                       help="a VapSR checkpoint (.pth or .safetensors) or a known model name such as VapSR_X2 "
                            "('vapsr-video weights list'); default: $VAPSR_VIDEO_WEIGHTS, else the bundled weights")
    group.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")
    group.add_argument("--precision", choices=PRECISION_NAMES, default=None,
                       help="arithmetic (default fp16 on CUDA, fp32 on CPU)")
    group.add_argument("--tile", type=int, default=0, metavar="PIXELS",
                       help="process frames in tiles of this size to save memory (default 0: whole frames)")
    group.add_argument("--tile-overlap", type=int, default=DEFAULT_OVERLAP, metavar="PIXELS",
                       help=f"context pixels around each tile (default {DEFAULT_OVERLAP})")
    group.add_argument("--engine", choices=ENGINES, default="eager",
                       help="how the network runs: eager PyTorch (default), compile (torch.compile, fixed shapes; "
                            "slow first frames, faster after), cuda-graphs (CUDA only)")


def model_options_from_arguments(args: argparse.Namespace) -> ModelOptions:
    from vapsr_video.inference.options import ModelOptions  # imports torch: not needed for --help

    return ModelOptions(weights=args.weights, variant=args.model, scale=args.scale, precision=args.precision,
                        tile=args.tile, tile_overlap=args.tile_overlap, device=args.device,
                        engine=getattr(args, "engine", "eager"))  # commands without --engine run eagerly


def add_encoder_arguments(parser: argparse.ArgumentParser) -> None:
    """Video encoder options, named as in FFmpeg (``vapsr-video IN OUT`` and ``vapsr-video batch``)."""
    group = parser.add_argument_group("video encoding (default: same codec, bit depth and chroma as the input)")
    group.add_argument("--codec", metavar="ENCODER",
                       help="video encoder, e.g. libx264, libx265, libsvtav1, libvpx-vp9, prores_ks, ffv1")
    group.add_argument("--crf", type=int, metavar="N",
                       help="constant quality (x264 default 18, x265 20, SVT-AV1 30, VP9 24; lower is better)")
    group.add_argument("--preset", metavar="NAME", help="encoder speed preset, e.g. slow, medium, fast (x264/x265), "
                       "0-13 (SVT-AV1)")
    group.add_argument("--pix-fmt", metavar="FORMAT", help="output pixel format, e.g. yuv420p, yuv420p10le")
    group.add_argument("--bitrate", metavar="RATE", help="target bit rate, e.g. 8M or 2500k (instead of --crf)")
    group.add_argument("--encoder-option", action="append", default=[], metavar="KEY=VALUE",
                       help="any encoder option, as FFmpeg's -KEY VALUE (repeatable), e.g. tune=film")


def encode_options_from_arguments(args: argparse.Namespace) -> EncodeOptions:
    from vapsr_video.video.encoder import EncodeOptions

    options: dict[str, str] = {}
    for item in args.encoder_option:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--encoder-option {item!r} is not KEY=VALUE")
        options[key.strip()] = value
    return EncodeOptions(codec=args.codec, crf=args.crf, preset=args.preset, pix_fmt=args.pix_fmt,
                         bitrate=args.bitrate, encoder_options=options)
