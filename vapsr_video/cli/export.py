"""``vapsr-video export OUT.onnx``: the model as ONNX, for TensorRT (e.g. through vs-mlrt) and other runtimes."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from vapsr_video.model.vapsr import VARIANTS
from vapsr_video.safe_output import check_output_path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vapsr-video export", description=__doc__,
        epilog="The graph takes N x 3 x H x W RGB in [0, 1] (input name 'input', N, H and W dynamic) and gives "
               "N x 3 x sH x sW (name 'output', not clamped). See docs/gpu.md.")
    parser.add_argument("output", help="the .onnx file to write")
    parser.add_argument("--scale", type=int, choices=(2, 3, 4), default=None,
                        help="bundled model scale (default 2; with --weights, read from the file)")
    parser.add_argument("--model", choices=VARIANTS, default="vapsr", help="bundled model variant")
    parser.add_argument("--weights", help="a VapSR checkpoint (.pth or .safetensors) instead of the bundled weights")
    parser.add_argument("--fp16", action="store_true", help="float16 weights, input and output (for TensorRT fp16)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    from vapsr_video.model.onnx_export import export_onnx
    from vapsr_video.model.weights import bundled_weights_path, load_model

    source = args.weights or bundled_weights_path(args.model, args.scale or 2)
    target = check_output_path(source, args.output, overwrite=args.overwrite)
    model = load_model(args.weights, variant=args.model, scale=args.scale)
    export_onnx(model, target, fp16=args.fp16)
    print(f"{target}: VapSR x{model.scale} ({model.config.variant}), {'fp16' if args.fp16 else 'fp32'}, "
          "input 'input' N x 3 x H x W RGB in [0, 1]")
    return 0
