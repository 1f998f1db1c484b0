"""Argument groups shared by the commands that run the model (upscale, batch, eval),
and the records they turn into: :class:`ModelOptions` and ``EncodeOptions``.

Every value is checked when the command line is parsed (argparse's one-line
message and exit 2), so a bad option never costs a model load or a probe.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from vapsr_video.choices import CRF_LIMITS, DEFAULT_MAX_PIXELS, ENGINES, PRECISION_NAMES, SCALES, VARIANTS
from vapsr_video.choices import DEFAULT_TILE_OVERLAP as DEFAULT_OVERLAP
from vapsr_video.errors import UsageError

MAX_TILE = 1 << 16  # larger than any picture --max-pixels lets through by default


def integer(low: int, high: int | None = None, *, meaning: str = "") -> Callable[[str], int]:
    """An argparse ``type``: an integer from ``low`` to ``high`` (inclusive; None: no upper bound)."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{value} is out of range: must be {bounds}{meaning}")
        return value

    parse.__name__ = "integer"  # what argparse names in "invalid integer value"
    return parse


def key_value(text: str) -> str:
    """An argparse ``type`` for ``--encoder-option``: ``KEY=VALUE`` with a non-empty key."""
    key, sep, _ = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return text


def bitrate(text: str) -> str:
    """An argparse ``type`` for ``--bitrate``: checked now, converted by the encoder module."""
    from vapsr_video.video.encoder import parse_bitrate

    try:
        if parse_bitrate(text) <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be more than zero")
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text

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
    group.add_argument("--tile", type=integer(0, MAX_TILE, meaning=" (0: whole frames)"), default=0,
                       metavar="PIXELS",
                       help="process frames in tiles of this size to save memory (default 0: whole frames)")
    group.add_argument("--tile-overlap", type=integer(0, MAX_TILE), default=DEFAULT_OVERLAP, metavar="PIXELS",
                       help=f"context pixels around each tile (default {DEFAULT_OVERLAP})")
    group.add_argument("--engine", choices=ENGINES, default="eager",
                       help="how the network runs: eager PyTorch (default), compile (torch.compile, fixed shapes; "
                            "slow first frames, faster after), cuda-graphs (CUDA only)")


def add_input_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """How large and how complete an input must be to be accepted."""
    group = parser.add_argument_group("input limits")
    group.add_argument("--max-pixels", type=integer(1), default=DEFAULT_MAX_PIXELS, metavar="N",
                       help=f"refuse inputs whose pictures (width x height, read from the header) have more pixels "
                            f"(default {DEFAULT_MAX_PIXELS:,}: 8K fits)")
    group.add_argument("--allow-partial", action="store_true",
                       help="keep the result of a video that ends before its header says (truncated or cut "
                            "short), with a warning; by default such an input is refused (exit 3)")


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
    group.add_argument("--crf", type=integer(*CRF_LIMITS, meaning=" (x264/x265 take 0-51)"), metavar="N",
                       help="constant quality (x264 default 18, x265 20, SVT-AV1 30, VP9 24; lower is better)")
    group.add_argument("--preset", metavar="NAME", help="encoder speed preset, e.g. slow, medium, fast (x264/x265), "
                       "0-13 (SVT-AV1)")
    group.add_argument("--pix-fmt", metavar="FORMAT", help="output pixel format, e.g. yuv420p, yuv420p10le")
    group.add_argument("--bitrate", type=bitrate, metavar="RATE",
                       help="target bit rate, e.g. 8M or 2500k (instead of --crf)")
    group.add_argument("--encoder-option", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                       help="any option of the encoder, as FFmpeg's -KEY VALUE (repeatable), e.g. tune=film; "
                            "an option the encoder does not have is an error")


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
