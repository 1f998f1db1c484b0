#!/usr/bin/env python3
"""Model-only speed of each engine and precision, and each one's error against eager fp32.

    python scripts/benchmark_engines.py                       # CPU: bundled x2, 4 x 3 x 90 x 160
    python scripts/benchmark_engines.py --device cuda --size 960x540 --batch 8
    python scripts/benchmark_engines.py --cases eager:fp32,compile:fp32 --repeats 20 --json out.json

Each case is ENGINE:PRECISION (engines: eager, compile, cuda-graphs; precisions: fp32, bf16,
fp16). Every case gets its own Upscaler; the first calls (compilation, graph capture, cuDNN
autotuning) are timed separately as warm-up. Errors are the largest difference from eager fp32
in 8-bit code values.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vapsr_video import Upscaler
from vapsr_video.inference.precision import cpu_has_native_bf16
from vapsr_video.model.weights import load_model


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(upscaler: Upscaler, frames: torch.Tensor, warmups: int, repeats: int) -> tuple[float, float, torch.Tensor]:
    """(warm-up seconds, seconds per call, last output)."""
    started = time.perf_counter()
    for _ in range(warmups):
        output = upscaler(frames)
    synchronize(upscaler.device)
    warm = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(repeats):
        output = upscaler(frames)
    synchronize(upscaler.device)
    return warm, (time.perf_counter() - started) / repeats, output


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--weights", help="a VapSR checkpoint (default: the bundled weights for --scale)")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--size", default="160x90", help="input WIDTHxHEIGHT")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--cases", default="eager:fp32,compile:fp32,eager:bf16,compile:bf16")
    parser.add_argument("--warmups", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    model = load_model(args.weights, scale=args.scale)
    device = torch.device(args.device)
    frames = torch.rand(args.batch, 3, height, width, generator=torch.Generator().manual_seed(0)).to(device)
    parameters = sum(p.numel() for p in model.parameters())
    # multiply-adds of the convolutions dominate: about 2 * parameters FLOPs per input pixel (body)
    flops_per_call = 2 * parameters * height * width * args.batch
    reference = None
    rows = []
    for case in args.cases.split(","):
        engine, precision = case.split(":")
        upscaler = Upscaler(model=load_model(args.weights, scale=args.scale), device=device, precision=precision,
                            engine=engine)
        warm, seconds, output = measure(upscaler, frames, args.warmups, args.repeats)
        output = output.float().cpu()
        if reference is None and case == "eager:fp32":
            reference = output
        error = None if reference is None else round(float((output - reference).abs().max()) * 255, 3)
        row = {"case": case, "ms_per_call": round(seconds * 1000, 1), "frames_per_s": round(args.batch / seconds, 2),
               "approx_gflops": round(flops_per_call / seconds / 1e9, 1), "warmup_s": round(warm, 1),
               "max_err_8bit_codes_vs_eager_fp32": error}
        rows.append(row)
        print(json.dumps(row), flush=True)
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "command": " ".join(sys.argv),
        "machine": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg(),
        "cpu_native_bf16": cpu_has_native_bf16(), "torch": torch.__version__,
        "input": [args.batch, 3, height, width], "parameters": parameters, "results": rows,
    }
    print(json.dumps({k: v for k, v in report.items() if k != "results"}))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
