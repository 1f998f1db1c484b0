#!/usr/bin/env python3
"""How far VapSR weights have moved from a fresh initialisation: RMS of each kind of layer.

    python scripts/weight_scale.py vapsr_video/bundled_weights/vapsr-x4.safetensors \\
        ../shared/data/reference-weights/VapSR_X4.pth

For each file, one row per kind of weight (the blocks' layers averaged over all
blocks): the RMS of the fresh PyTorch initialisation of the same configuration
(what training starts from; the reference code uses the same), the file's RMS and
their ratio. A model trained for long has left the fresh scale far behind (the
authors' checkpoints: 1x1 weights 4-10 times their starting RMS, the blocks'
LayerNorm gains well below 1); one whose ratios are near 1 has mostly its random
start in it, and more training is what it needs, not a different recipe.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from collections.abc import Sequence

import torch

from vapsr_video.cli.main import run_guarded
from vapsr_video.model.vapsr import VapSR
from vapsr_video.model.weights import load_model

BLOCK_INDEX = re.compile(r"^body\.\d+\.")


def rms_by_kind(state_dict: dict[str, torch.Tensor]) -> dict[str, float]:
    """RMS of every weight (not bias) tensor, the blocks' ones pooled by name across blocks."""
    squares: dict[str, list[torch.Tensor]] = defaultdict(list)
    for name, tensor in state_dict.items():
        if name.endswith(".weight"):
            squares[BLOCK_INDEX.sub("body.*.", name)].append(tensor.detach().float().pow(2).flatten())
    return {kind: float(torch.cat(parts).mean().sqrt()) for kind, parts in squares.items()}


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", nargs="+", help="safetensors files, known model names or the authors' .pth files")
    args = parser.parse_args(argv)
    for path in args.weights:
        model = load_model(path)  # a bad file: one line and its exit code (run_guarded)
        torch.manual_seed(0)
        fresh = rms_by_kind(VapSR(model.config).state_dict())
        trained = rms_by_kind(model.state_dict())
        print(f"{path} ({model.config.variant} x{model.scale})")
        print(f"  {'weight':<46} {'fresh RMS':>10} {'file RMS':>10} {'ratio':>7}")
        for kind, value in trained.items():
            print(f"  {kind:<46} {fresh[kind]:>10.4f} {value:>10.4f} {value / fresh[kind]:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main, sys.argv[1:]))
