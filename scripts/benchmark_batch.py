#!/usr/bin/env python3
"""Benchmark of ``vapsr-video batch``: what the batch machinery costs, and how it scales.

1. Scheduling overhead per file against processing time, on 10-second clips:
   the batch's wall time minus the model loading and the time spent inside the
   per-file work (decode-upscale-encode, publish), divided by the number of files.
   That remainder is the batch's own cost: walking, fingerprinting and probing,
   the database claims and records, the report.
2. Raw database cost: claim + record of one job, averaged over many.
3. Throughput with N workers against one (``--devices cpu`` vs ``cpu,cpu`` on a
   CPU, ``cuda:0`` vs ``cuda:0,cuda:1`` on GPUs): frames per second of the batch.

Example (the numbers in docs/batch.md):
    .venv/bin/python scripts/benchmark_batch.py --clips 4 --seconds 10 --json batch-bench.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from vapsr_video.batch.jobs_db import JobsDB, process_prefix
from vapsr_video.cli.batch import main as batch_main
from vapsr_video.model.vapsr import VapSR, published_config
from vapsr_video.model.weights import save_weights


def make_clips(folder: Path, count: int, seconds: float, size: str, fps: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=size={size}:rate={fps}:duration={seconds}", "-f", "lavfi", "-i",
                        f"sine=frequency={300 + 50 * index}:sample_rate=48000:duration={seconds}",
                        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(folder / f"clip{index:02d}.mp4")],
                       check=True)


def run_batch(src: Path, dst: Path, weights: Path, devices: str) -> dict:
    shutil.rmtree(dst, ignore_errors=True)
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = batch_main([str(src), str(dst), "--weights", str(weights), "--devices", devices, "--quiet",
                           "--segment-seconds", "0"])
    wall = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"batch failed with exit code {code}")
    with JobsDB(dst / ".vapsr-batch" / "jobs.sqlite") as db:
        jobs = db.jobs()
    frames = sum(job.frames or 0 for job in jobs)
    work = sum(job.work_seconds or 0.0 for job in jobs)
    return {"devices": devices, "files": len(jobs), "frames": frames, "wall_seconds": wall,
            "work_seconds": work, "frames_per_second": frames / wall}


def model_load_seconds(weights: Path, devices: str) -> float:
    from vapsr_video.inference.upscaler import Upscaler

    started = time.perf_counter()
    for device in devices.split(","):
        Upscaler(weights=weights, device=device)
    return time.perf_counter() - started


def db_cost_per_job(folder: Path, count: int = 500) -> float:
    with JobsDB(folder / "bench.sqlite") as db:
        for index in range(count):
            db.upsert_discovered(rel_path=f"f{index}", source=f"/s/f{index}", output=f"/d/f{index}", fingerprint="x",
                                 state="pending", reason=None, permanent=False, input_bytes=1, duration=10.0,
                                 est_frames=250)
        owner = process_prefix() + "bench@cpu"
        started = time.perf_counter()
        while (claim := db.claim(owner)) is not None:
            db.finish_job(claim.job.id, owner, frames=250, seconds=1.0, output_bytes=1, run_id=1)
        return (time.perf_counter() - started) / count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", default="96x64", help="input frame size (default 96x64)")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--weights", help="checkpoint (default: the published VapSR x2 size, random weights)")
    parser.add_argument("--workers", default=None,
                        help="comma-separated device lists to compare, ';'-separated "
                             "(default: 'cpu;cpu,cpu', or 'cuda:0;cuda:0,...' with GPUs)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vapsr-batch-bench-") as scratch:
        root = Path(scratch)
        weights = Path(args.weights) if args.weights else root / "vapsr-x2.safetensors"
        if not args.weights:
            torch.manual_seed(0)
            save_weights(VapSR(published_config("vapsr", 2)), weights)
        make_clips(root / "src", args.clips, args.seconds, args.size, args.fps)
        if args.workers:
            configurations = args.workers.split(";")
        elif torch.cuda.is_available():
            gpus = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
            configurations = [gpus[0], ",".join(gpus)] if len(gpus) > 1 else [gpus[0]]
        else:
            configurations = ["cpu", "cpu,cpu"]

        results = []
        threads = torch.get_num_threads()
        for devices in configurations:
            torch.set_num_threads(threads)  # a multi-worker run splits the cores; undo it
            load = model_load_seconds(weights, devices)
            result = run_batch(root / "src", root / "dst", weights, devices)
            result["model_load_seconds"] = load
            # Several workers work at once: their summed work time is not wall time; only
            # the one-worker run measures the overhead cleanly.
            if "," not in devices:
                overhead = result["wall_seconds"] - load - result["work_seconds"]
                result["overhead_per_file_seconds"] = overhead / result["files"]
                result["work_per_file_seconds"] = result["work_seconds"] / result["files"]
                result["overhead_percent"] = 100 * overhead / result["work_seconds"]
            results.append(result)
        db_cost = db_cost_per_job(root)

    base = results[0]["frames_per_second"]
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
          f"{threads} torch threads, CUDA: {torch.cuda.is_available()}")
    print(f"clips: {args.clips} x {args.seconds:g} s, {args.size} @ {args.fps} fps")
    print(f"{'devices':<16} {'frames/s':>9} {'speed-up':>9} {'wall s':>8} {'work s':>8} {'overhead/file':>14}")
    for result in results:
        overhead = result.get("overhead_per_file_seconds")
        percent = result.get("overhead_percent")
        text = f"{overhead * 1000:.0f} ms ({percent:.2f}%)" if overhead is not None else "-"
        print(f"{result['devices']:<16} {result['frames_per_second']:>9.2f} "
              f"{result['frames_per_second'] / base:>8.2f}x {result['wall_seconds']:>8.1f} "
              f"{result['work_seconds']:>8.1f} {text:>14}")
    print(f"database claim + record: {db_cost * 1000:.2f} ms per job")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "db_seconds_per_job": db_cost,
                                               "clips": args.clips, "seconds": args.seconds, "size": args.size,
                                               "fps": args.fps, "argv": sys.argv}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
