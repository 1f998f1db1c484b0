#!/usr/bin/env python3
"""Frames per second of ``vspipe`` over ``core.vapsr.Upscale`` against the ``Upscaler``'s own speed.

The same noise frames go through (1) the ``Upscaler`` called frame by frame in
this process, from CPU float tensors to CPU float tensors (upload and download
included on a GPU): the model-only speed; (2) ``vspipe`` running a .vpy with the
native plugin; (3) optionally the pure-Python twin. vspipe's own "Output N
frames in S seconds" figure is used, which leaves out script evaluation (torch
import, model loading). Target: (2) within 10% of (1).

On a shared machine the measurements alternate (Upscaler, vspipe, twin, Upscaler,
...) ``--repeats`` times and the best of each is reported, so that a burst of
load from other processes does not decide the comparison.

    python scripts/benchmark_vapoursynth.py --weights ../shared/data/reference-weights/VapSR_X2.pth \\
        --width 128 --height 72 --frames 20 --device cpu
    python scripts/benchmark_vapoursynth.py --weights W --width 1920 --height 1080 --frames 200 \\
        --device cuda --fp16 --num-streams 2 --requests 4     # on a GPU
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from vapsr_video.inference import Upscaler
from vapsr_video.model.weights import bundled_weights_path

REPO = Path(__file__).resolve().parents[1]
REFERENCE_X2 = REPO.parent / "shared" / "data" / "reference-weights" / "VapSR_X2.pth"
VSPIPE_SPEED = re.compile(r"Output (\d+) frames in ([\d.]+) seconds \(([\d.]+) fps\)")

SCRIPT = textwrap.dedent("""
    import numpy as np
    import torch
    import vapoursynth as vs
    from vapsr_video.vapoursynth import load_plugin, upscale

    if {threads}:
        torch.set_num_threads({threads})
    core = vs.core
    fmt = vs.RGBH if {fp16} else vs.RGBS
    dtype = np.float16 if {fp16} else np.float32
    noise = [np.random.default_rng(n).random((3, {height}, {width}), dtype=np.float32).astype(dtype)
             for n in range(8)]
    blank = core.std.BlankClip(width={width}, height={height}, format=fmt, length={frames})

    def fill(n, f):
        frame = f.copy()
        for plane in range(3):
            np.asarray(frame[plane])[:] = noise[n % len(noise)][plane]
        return frame

    clip = core.std.ModifyFrame(blank, blank, fill)
    options = dict(weights={weights!r}, device={device!r}, num_streams={num_streams}, tilesize={tilesize})
    if {twin}:
        clip = upscale(clip, **options)
    else:
        load_plugin(core)
        clip = core.vapsr.Upscale(clip, **options)
    clip.set_output()
""")


def default_weights() -> str:
    try:
        return str(bundled_weights_path("vapsr", 2))
    except Exception:
        if REFERENCE_X2.is_file():
            return str(REFERENCE_X2)
        raise SystemExit("no bundled weights yet and no ../shared reference checkpoint: pass --weights") from None


@dataclass
class Measurement:
    fps: float  # wall clock
    cpu_per_frame: float  # CPU seconds (all threads) per frame: robust to other processes' load


def upscaler_speed(args: argparse.Namespace) -> Measurement:
    dtype = torch.float16 if args.fp16 else torch.float32
    upscaler = Upscaler(weights=args.weights, device=args.device, tile=args.tilesize,
                        precision="fp16" if args.fp16 else ("fp32" if args.device == "cpu" else None))
    frames = [torch.from_numpy(np.random.default_rng(n).random((3, args.height, args.width), dtype=np.float32))
              .to(dtype) for n in range(8)]
    for frame in frames[:2]:  # warm-up (cuDNN autotuning, allocator)
        upscaler(frame).cpu()
    start, cpu_start = time.perf_counter(), time.process_time()
    for n in range(args.frames):
        upscaler(frames[n % len(frames)]).cpu()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return Measurement(args.frames / wall, cpu / args.frames)


def _run_vspipe(args: argparse.Namespace, twin: bool, last_frame: int) -> tuple[float, float]:
    """vspipe's own fps figure and the CPU seconds the whole vspipe process used."""
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "benchmark.vpy"
        script.write_text(SCRIPT.format(width=args.width, height=args.height, frames=args.frames, fp16=args.fp16,
                                        weights=args.weights, device=args.device, num_streams=args.num_streams,
                                        tilesize=args.tilesize, twin=twin, threads=args.threads))
        vspipe = Path(sys.executable).with_name("vspipe")
        requests = ["-r", str(args.requests)] if args.requests else []
        command = [str(vspipe), *requests, "-e", str(last_frame), str(script), "--"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    found = VSPIPE_SPEED.search(result.stderr)
    if result.returncode or not found:
        raise SystemExit(f"vspipe failed ({result.returncode}):\n{result.stderr}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return float(found.group(3)), cpu


def vspipe_speed(args: argparse.Namespace, twin: bool) -> Measurement:
    # The CPU time of a 2-frame run (start-up, model loading, warm-up) is subtracted
    # from that of the full run, leaving the cost of the other frames.
    fps, cpu_all = _run_vspipe(args, twin, args.frames - 1)
    _, cpu_start_up = _run_vspipe(args, twin, 1)
    return Measurement(fps, (cpu_all - cpu_start_up) / (args.frames - 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="default: bundled vapsr x2, else ../shared's VapSR_X2.pth")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--height", type=int, default=72)
    parser.add_argument("--frames", type=int, default=20, help="at least 3")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--fp16", action="store_true", help="RGBH clip and fp16 compute (CUDA only)")
    parser.add_argument("--num-streams", type=int, default=1, help="frames in flight inside the plugin")
    parser.add_argument("--requests", type=int, default=0, help="vspipe -r (0: its default, the thread count)")
    parser.add_argument("--tilesize", type=int, default=0)
    parser.add_argument("--twin", action="store_true", help="also time the pure-Python twin")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads in both (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds; the best of each is kept")
    args = parser.parse_args()
    args.weights = args.weights or default_weights()
    if Path(args.weights).exists():  # a file, not a cached name: vspipe runs the script from a temporary folder
        args.weights = str(Path(args.weights).resolve())
    if args.threads:
        torch.set_num_threads(args.threads)

    runs: dict[str, list[Measurement]] = {"upscaler": [], "vspipe_native": []}
    if args.twin:
        runs["vspipe_twin"] = []
    for _ in range(args.repeats):
        runs["upscaler"].append(upscaler_speed(args))
        runs["vspipe_native"].append(vspipe_speed(args, twin=False))
        if args.twin:
            runs["vspipe_twin"].append(vspipe_speed(args, twin=True))
    best = {name: Measurement(max(m.fps for m in values), min(m.cpu_per_frame for m in values))
            for name, values in runs.items()}
    reference = best["upscaler"]
    machine = f"{platform.machine()}, {torch.get_num_threads()} torch threads, device {args.device}"
    if args.device.startswith("cuda"):
        machine += f" ({torch.cuda.get_device_name(torch.device(args.device))})"
    print(f"{args.width}x{args.height}, {args.frames} frames, weights {Path(args.weights).name}, {machine}")
    for name, result in best.items():
        cpu_ratio = result.cpu_per_frame / reference.cpu_per_frame
        print(f"  {name:14s} {result.fps:8.2f} frames/s ({result.fps / reference.fps:6.1%})   "
              f"{result.cpu_per_frame * 1000:8.1f} CPU ms/frame ({cpu_ratio:6.1%})")
    print(json.dumps({**vars(args), "best": {k: asdict(v) for k, v in best.items()},
                      "all_runs": {k: [asdict(m) for m in v] for k, v in runs.items()},
                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}))


if __name__ == "__main__":
    main()
