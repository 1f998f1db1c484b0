#!/usr/bin/env python3
"""Print how far VapSR weights move flat saturated and extreme colours (interior, 8-bit code values).

    python scripts/flat_colour_error.py runs/vapsr-x2/vapsr-x2.safetensors ../shared/data/reference-weights/VapSR_X2.pth

For each file: every colour's largest error per channel, then the worst. The
colour-fidelity test (tests/test_colour_fidelity.py) wants at most 2, or no worse
than the authors' checkpoint of the same scale.
"""

import argparse
import sys
from collections.abc import Sequence

import torch

from vapsr_video.cli.main import run_guarded
from vapsr_video.evaluation.flat_colours import FLAT_COLOURS, flat_colour_errors
from vapsr_video.model.weights import load_model


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", nargs="+", help="safetensors files or the authors' .pth checkpoints")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for path in args.weights:
        model = load_model(path)  # a bad file: one line and its exit code (run_guarded)
        results = flat_colour_errors(model, FLAT_COLOURS)
        print(f"{path} ({model.config.variant} x{model.scale})")
        for result in results:
            print(f"  {result.colour!s:>16} -> error per channel {result.channel_errors}")
        worst = max(results, key=lambda result: result.worst)
        print(f"  worst: {worst.worst} code values, on {worst.colour}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main, sys.argv[1:]))
