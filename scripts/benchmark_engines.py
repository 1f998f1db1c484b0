#!/usr/bin/env python3
"""Model-only speed of each engine and precision, and each one's error against eager fp32.

    python scripts/benchmark_engines.py                       # CPU: bundled x2, 4 x 3 x 90 x 160
    python scripts/benchmark_engines.py --device cuda --size 960x540 --batch 8
    python scripts/benchmark_engines.py --cases eager:fp32,compile:fp32 --repeats 20 --json out.json

Each case is ENGINE:PRECISION (engines: eager, compile, cuda-graphs; precisions: fp32, bf16,
fp16). Every case gets its own Upscaler; the first calls (compilation, graph capture, cuDNN
autotuning) are timed separately as warm-up. Then the cases take turns for --rounds rounds of
--repeats calls each, and each case's fastest round counts: on a shared machine the load changes
from minute to minute, and taking turns exposes every case to it alike. Errors are the largest
difference from eager fp32 in 8-bit code values.
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


def warm_up(upscaler: Upscaler, frames: torch.Tensor, calls: int) -> tuple[float, torch.Tensor]:
    """(seconds, last output) of the first calls."""
    started = time.perf_counter()
    for _ in range(calls):
        output = upscaler(frames)
    synchronize(upscaler.device)
    return time.perf_counter() - started, output


def seconds_per_call(upscaler: Upscaler, frames: torch.Tensor, repeats: int) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        upscaler(frames)
    synchronize(upscaler.device)
    return (time.perf_counter() - started) / repeats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--weights", help="a VapSR checkpoint (default: the bundled weights for --scale)")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--size", default="160x90", help="input WIDTHxHEIGHT")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--cases", default="eager:fp32,compile:fp32,eager:bf16,compile:bf16")
    parser.add_argument("--warmups", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="calls per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    model = load_model(args.weights, scale=args.scale)
    device = torch.device(args.device)
    frames = torch.rand(args.batch, 3, height, width, generator=torch.Generator().manual_seed(0)).to(device)
    parameters = sum(p.numel() for p in model.parameters())
    # multiply-adds of the convolutions dominate: about 2 * parameters FLOPs per input pixel (body)
    flops_per_call = 2 * parameters * height * width * args.batch
    cases = args.cases.split(",")
    upscalers, warmups, errors = {}, {}, {}
    reference = None
    for case in cases:
        engine, precision = case.split(":")
        upscalers[case] = Upscaler(model=load_model(args.weights, scale=args.scale), device=device,
                                   precision=precision, engine=engine)
        warmups[case], output = warm_up(upscalers[case], frames, args.warmups)
        output = output.float().cpu()
        if reference is None and case == "eager:fp32":
            reference = output
        errors[case] = None if reference is None else round(float((output - reference).abs().max()) * 255, 3)
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(args.rounds):
        for case in cases:
            best[case] = min(best[case], seconds_per_call(upscalers[case], frames, args.repeats))
    rows = []
    for case in cases:
        seconds = best[case]
        row = {"case": case, "ms_per_call": round(seconds * 1000, 1), "frames_per_s": round(args.batch / seconds, 2),
               "approx_gflops": round(flops_per_call / seconds / 1e9, 1), "warmup_s": round(warmups[case], 1),
               "max_err_8bit_codes_vs_eager_fp32": errors[case]}
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
