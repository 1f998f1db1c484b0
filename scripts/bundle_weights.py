#!/usr/bin/env python3
"""Measure trained weights on Set5/Set14/B100, record the numbers in their
metadata, and install them as the package's bundled weights.

    python scripts/bundle_weights.py runs/*/vapsr-*.safetensors --data ../shared/data/benchmarks
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vapsr_video import Upscaler
from vapsr_video.evaluation.evaluate import evaluate_upscaler
from vapsr_video.model.weights import BUNDLED_DIR, build_model, read_state_dict, save_weights

SETS = ("Set5", "Set14", "B100")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", nargs="+", type=Path)
    parser.add_argument("--data", required=True, help="folder holding Set5/HR, Set14/HR, B100/HR")
    parser.add_argument("--into", type=Path, default=BUNDLED_DIR)
    args = parser.parse_args()
    for path in args.weights:
        tensors, metadata = read_state_dict(path)
        model = build_model(tensors, str(path))
        name = f"{model.config.variant}-x{model.scale}"
        results = evaluate_upscaler(Upscaler(model=model, device="cpu"), SETS, label=name, data_dir=args.data)
        for result in results:
            key = result.set_name.lower()
            metadata[f"{key}_psnr"] = f"{result.psnr:.4f}"
            metadata[f"{key}_ssim"] = f"{result.ssim:.5f}"
            print(f"| {name} | {result.set_name} | {result.psnr:.2f} | {result.ssim:.4f} |", flush=True)
        metadata["evaluation"] = "vapsr-video eval protocol: MATLAB bicubic LR, Y channel BT.601, border = scale"
        metadata.pop("format", None)
        metadata.pop("config", None)
        target = args.into / f"{name}.safetensors"
        save_weights(model, target, metadata)
        print(json.dumps({"installed": str(target), "metadata": metadata}, indent=1))


if __name__ == "__main__":
    main()
