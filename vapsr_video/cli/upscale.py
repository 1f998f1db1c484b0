"""``vapsr-video IN OUT``: upscale one video or image file.

Whether IN is a video or a still image is found by probing its contents (not
its extension); images go to the still-image writer, videos to the streaming
pipeline.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from vapsr_video.cli.options import (
    add_encoder_arguments,
    add_input_limit_arguments,
    add_model_arguments,
    encode_options_from_arguments,
    integer,
    model_options_from_arguments,
)
from vapsr_video.errors import UsageError

if TYPE_CHECKING:
    from vapsr_video.video.probe import VideoInfo

log = logging.getLogger("vapsr_video")



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vapsr-video",
        description="Upscale a video or an image with VapSR. "
                    "Subcommands: eval, batch, train (see 'vapsr-video CMD -h').",
        epilog="Exit codes: 0 done, 1 unexpected failure, 2 bad arguments, 3 unusable input (also too large, "
               "truncated or cut short), 4 output cannot be written, 5 unusable weights, 129/130/143 stopped by "
               "SIGHUP/Ctrl-C/SIGTERM.",
    )
    parser.add_argument("input", help="video or image to upscale ('-': standard input)")
    parser.add_argument("output", help="where to write the result (format from the extension; "
                                       "'-': standard output, with --format)")
    parser.add_argument("--format", choices=("mkv", "nut", "mpegts"),
                        help="output container; required when OUTPUT is '-' (a pipe)")
    parser.add_argument("--deinterlace", choices=("frame", "field", "keep"), default="frame",
                        help="interlaced input: deinterlaced (bwdif) to one frame per frame (default) or one "
                             "frame per field (double rate); keep: upscale each field and weave them back")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary (warnings still shown)")
    add_model_arguments(parser)
    parser.add_argument("--batch-size", type=integer(1, 1024), default=4, metavar="N",
                        help="video frames per forward pass (default 4)")
    add_input_limit_arguments(parser)
    add_encoder_arguments(parser)
    return parser


class _TqdmSafeHandler(logging.Handler):
    """Warnings as one line each on stderr, without tearing a progress bar apart."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        tqdm.write(f"vapsr-video: {record.levelname.lower()}: {' '.join(record.getMessage().split())}",
                   file=sys.stderr)


def configure_logging() -> None:
    if not any(isinstance(handler, _TqdmSafeHandler) for handler in log.handlers):
        log.addHandler(_TqdmSafeHandler())
    log.setLevel(logging.WARNING)
    log.propagate = False


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _video_options_given(args: argparse.Namespace) -> bool:
    return any((args.codec, args.crf is not None, args.preset, args.pix_fmt, args.bitrate, args.encoder_option))


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    from vapsr_video.safe_output import check_output_path
    from vapsr_video.video.pipes import is_pipe, pipe_muxer
    from vapsr_video.video.probe import probe_video

    if is_pipe(args.output):
        pipe_muxer(args.format)  # refuses a missing or unstreamable --format before any work
    if is_pipe(args.input):
        # A pipe can be read once: no separate probe; the pipeline reads and checks the stream itself.
        return _upscale_video(args, None)
    if not is_pipe(args.output):
        check_output_path(args.input, args.output, overwrite=args.overwrite)
    info = probe_video(args.input, max_pixels=args.max_pixels)
    if info.is_image and is_pipe(args.output):
        raise UsageError(f"{args.input}: a still image cannot be written to standard output; give a file name")
    if info.is_image:
        from vapsr_video.imaging.image_files import upscale_image_file

        if _video_options_given(args):
            log.warning("video encoder options are ignored for a still image")
        upscaler = model_options_from_arguments(args).build()
        upscale_image_file(args.input, args.output, upscaler, overwrite=args.overwrite, max_pixels=args.max_pixels)
        if not args.quiet:
            print(f"{args.input} -> {args.output} ({human_size(Path(args.output).stat().st_size)})")
        return 0
    from vapsr_video.imaging.image_files import is_image_path

    if is_image_path(args.output):
        raise UsageError(f"{args.output}: cannot write a video ({args.input}) to an image file; "
                         "use a video extension such as .mp4 or .mkv")
    return _upscale_video(args, info)


class _LazyBar:
    """A tqdm bar that appears with the first finished frames, so setup errors print alone."""

    def __init__(self, total: int, name: str, quiet: bool) -> None:
        self.total, self.name, self.quiet = total, name, quiet
        self.bar = None

    def update(self, frames: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total or None, unit="frame", disable=self.quiet, dynamic_ncols=True,
                            desc=self.name, file=sys.stderr, leave=False)
        self.bar.update(frames)

    def finished(self) -> None:
        """The job is done: an estimated total that was off by a frame or two ends at 100 %, not 95 %."""
        if self.bar is not None and self.bar.total != self.bar.n:
            self.bar.total = self.bar.n
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _upscale_video(args: argparse.Namespace, info: VideoInfo | None) -> int:
    from vapsr_video.video.pipeline import upscale_video
    from vapsr_video.video.pipes import is_pipe

    encode = encode_options_from_arguments(args)
    upscaler = model_options_from_arguments(args).build()
    bar = _LazyBar(info.frames if info else 0, "stdin" if info is None else Path(args.input).name, args.quiet)
    try:
        result = upscale_video(args.input, args.output, upscaler, encode, batch_size=args.batch_size,
                               progress=bar.update, overwrite=args.overwrite, output_format=args.format,
                               deinterlace=args.deinterlace, max_pixels=args.max_pixels,
                               allow_partial=args.allow_partial)
        bar.finished()
    finally:
        bar.close()
    if result.nonfinite_pixels:
        log.warning("%s: the model gave NaN or infinity for %d output pixel(s), replaced before encoding "
                    "(usually fp16 overflow: try --precision fp32 or bf16)", args.output, result.nonfinite_pixels)
    if not args.quiet:
        fps = result.frames / result.seconds if result.seconds > 0 else 0.0
        notes = ""
        if result.decode_errors:
            notes += f", {result.decode_errors} damaged packet(s) skipped"
        if result.partial:
            notes += ", input cut short (kept as --allow-partial asks)"
        if result.dropped_streams:
            notes += f", {len(result.dropped_streams)} stream(s) left out"
        # With the video on standard output, the summary goes to stderr: stdout carries only the stream.
        size = "streamed" if is_pipe(args.output) else human_size(result.output_bytes)
        print(f"{args.input} -> {args.output}: {result.frames} frames in {result.seconds:.1f} s "
              f"({fps:.2f} fps), {size}{notes}", file=sys.stderr if is_pipe(args.output) else sys.stdout)
    return 0
