"""``vapsr-video IN OUT``: upscale one video or image file."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from vapsr_video.cli.options import add_model_arguments, upscaler_from_arguments


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vapsr-video",
        description="Upscale a video or an image with VapSR. Subcommands: eval, batch, train (see 'vapsr-video CMD -h').",
    )
    parser.add_argument("input", help="video or image to upscale")
    parser.add_argument("output", help="where to write the result (format from the extension)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    add_model_arguments(parser)
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    from vapsr_video.imaging.image_files import upscale_image_file

    upscaler = upscaler_from_arguments(args)
    upscale_image_file(args.input, args.output, upscaler, overwrite=args.overwrite)
    return 0
