#!/usr/bin/env python3
"""Benchmark the video upscaler, stage by stage, against a naive baseline, on one clip.

Measured in one run on the same clip (each stage in its own fresh process, so that
its peak memory is its own):

  decode    PyAV demux + decode + copy of the planes into a host buffer (the pipeline's stage 1)
  model     the network alone, frames already on the device, batches of --batch-size
  encode    encoding already-upscaled frames with the encoder the pipeline picks (stage 3)
  pipeline  the whole ``upscale_video`` call (threads, queues, colour on the device, stream copy)
  naive     the way common scripts work: ffmpeg-python subprocess pipes of raw RGB frames and one
            synchronous fp32 forward pass per frame

Examples:
    python scripts/benchmark.py                                  # CPU, 320x180 synthetic clip, 2 s
    python scripts/benchmark.py --device cuda --size 960x540 --seconds 10 --json gpu.json
    python scripts/benchmark.py --memory-check --size 160x90 --seconds 1   # peak RSS, 1x vs 10x length

Weights: --weights FILE, else the bundled weights, else the authors' checkpoint in
../shared, else random weights of the real size (same speed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO))

STAGES = ("decode", "model", "encode", "pipeline", "naive")


# --------------------------------------------------------------------------- helpers (run in stage processes)
def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def build_upscaler(args: argparse.Namespace):
    import torch

    from vapsr_video.inference.upscaler import Upscaler
    from vapsr_video.model.vapsr import VapSR, published_config
    from vapsr_video.model.weights import load_model

    _, path = weights_source(args)
    if path is None:
        torch.manual_seed(0)
        model = VapSR(published_config(args.model, args.scale))
    else:
        model = load_model(path, variant=args.model, scale=args.scale)
    return Upscaler(model=model, device=args.device, precision=args.precision)


def weights_source(args: argparse.Namespace) -> tuple[str, Path | None]:
    """(description, file): --weights, else bundled, else the authors' checkpoint, else random (None)."""
    from vapsr_video.model.weights import bundled_weights_path

    if args.weights:
        return str(args.weights), args.weights
    with contextlib.suppress(Exception):
        bundled = Path(bundled_weights_path(args.model, args.scale))
        if bundled.is_file():
            return f"bundled {bundled.name}", bundled
    name = "VapSR-S.pth" if args.model == "vapsr-s" else f"VapSR_X{args.scale}.pth"
    reference = REPO.parent / "shared" / "data" / "reference-weights" / name
    if reference.is_file() and (args.model == "vapsr" or args.scale == 4):
        return f"authors' {name}", reference
    return f"random {args.model} x{args.scale} (real size, same speed)", None


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_device_mib(device) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def stage_decode(args: argparse.Namespace) -> dict:
    import av
    import numpy as np

    from vapsr_video.video.colour import copy_frame_into, is_native_format, native_fallback, plane_layout

    with av.open(str(args.input)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = 0
        fmt = stream.codec_context.format.name
        fmt = fmt if is_native_format(fmt) else native_fallback(fmt)
        layout = plane_layout(fmt, stream.codec_context.width, stream.codec_context.height)
        buffer = np.empty(layout.samples, layout.numpy_dtype)
        frames, started = 0, time.perf_counter()
        for frame in container.decode(stream):
            copy_frame_into(frame, layout, buffer)
            frames += 1
        seconds = time.perf_counter() - started
    return {"frames": frames, "seconds": seconds}


def clip_size(path: Path) -> tuple[int, int, int]:
    from vapsr_video.video.probe import probe_video

    info = probe_video(path)
    return info.width, info.height, info.frames


def stage_model(args: argparse.Namespace) -> dict:
    import torch

    upscaler = build_upscaler(args)
    width, height, frames = clip_size(args.input)
    batch = torch.rand(args.batch_size, 3, height, width, device=upscaler.device).to(upscaler.dtype)
    for _ in range(2):  # warm-up: cuDNN autotuning, allocator
        upscaler(batch)
    synchronize(upscaler.device)
    if upscaler.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(upscaler.device)
    done, started = 0, time.perf_counter()
    while done < frames:
        upscaler(batch)
        done += args.batch_size
    synchronize(upscaler.device)
    return {"frames": done, "seconds": time.perf_counter() - started, "peak_device_mib": peak_device_mib(
        upscaler.device)}


def stage_encode(args: argparse.Namespace) -> dict:
    import av
    import numpy as np
    import torch

    from vapsr_video.video.colour import (
        colour_spec,
        copy_frame_into,
        frame_from_buffer,
        is_native_format,
        native_fallback,
        plane_layout,
        samples_to_tensor,
        tensor_to_samples,
    )
    from vapsr_video.video.encoder import EncodeOptions, choose_encoder, configure_video_stream
    from vapsr_video.video.output_file import output_colour  # the same tags the pipeline writes

    scale = args.scale
    upscaled: list[np.ndarray] = []
    with av.open(str(args.input)) as container:
        stream = container.streams.video[0]
        context = stream.codec_context
        fmt = context.format.name if is_native_format(context.format.name) else native_fallback(context.format.name)
        layout = plane_layout(fmt, context.width, context.height)
        spec = colour_spec(context, fmt)
        codec, rate, time_base = context.name, stream.average_rate, stream.time_base
        buffer = np.empty(layout.samples, layout.numpy_dtype)
        pts = []
        for frame in container.decode(stream):
            copy_frame_into(frame, layout, buffer)
            planes, offset = [], 0
            for size, shape in zip(layout.plane_sizes, layout.plane_shapes, strict=True):
                plane = samples_to_tensor(buffer[offset:offset + size].reshape(shape).copy())
                planes.append(plane.repeat_interleave(scale, 0).repeat_interleave(scale, 1).flatten())
                offset += size
            upscaled.append(tensor_to_samples(torch.cat(planes)))
            pts.append(frame.pts)
    with tempfile.TemporaryDirectory() as folder, av.open(str(Path(folder) / f"encoded{args.input.suffix}"),
                                                          "w") as output:
        choice = choose_encoder(codec, fmt, output, EncodeOptions())
        out_layout = plane_layout(choice.pix_fmt, layout.width * scale, layout.height * scale)
        if choice.pix_fmt != fmt:  # the source's format cannot be written as is: convert once, untimed
            raise SystemExit(f"encode stage: {choice.codec} cannot write {fmt}; benchmark another clip")
        video = output.add_stream(choice.codec)
        configure_video_stream(video, choice, width=out_layout.width, height=out_layout.height, time_base=time_base,
                               frame_rate=rate, sample_aspect_ratio=None,
                               colour=output_colour(spec, layout, out_layout))
        started = time.perf_counter()
        for planes, frame_pts in zip(upscaled, pts, strict=True):
            frame = frame_from_buffer(planes, out_layout)
            frame.pts, frame.time_base = frame_pts, time_base
            output.mux(video.encode(frame))
        output.mux(video.encode(None))
        seconds = time.perf_counter() - started
    return {"frames": len(upscaled), "seconds": seconds, "encoder": choice.codec}


def stage_pipeline(args: argparse.Namespace) -> dict:
    import torch

    from vapsr_video.video.pipeline import upscale_video

    upscaler = build_upscaler(args)
    if upscaler.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(upscaler.device)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        result = upscale_video(args.input, Path(folder) / f"upscaled{args.input.suffix}", upscaler,
                               batch_size=args.batch_size)
        seconds = time.perf_counter() - started
    return {"frames": result.frames, "seconds": seconds, "peak_device_mib": peak_device_mib(upscaler.device)}


def stage_naive(args: argparse.Namespace) -> dict:
    """ffmpeg-python pipes of raw RGB, one synchronous fp32 forward per frame (as common scripts do)."""
    try:
        import ffmpeg
    except ImportError:
        raise SystemExit("the naive baseline needs ffmpeg-python: pip install 'vapsr-video[bench]'") from None
    import numpy as np
    import torch

    from vapsr_video.inference.upscaler import Upscaler

    upscaler = build_upscaler(args)
    model = Upscaler(model=upscaler.model.float(), device=upscaler.device, precision="fp32").model
    width, height, _ = clip_size(args.input)
    rate = ffmpeg.probe(str(args.input))["streams"][0].get("avg_frame_rate", "25/1")
    scale = args.scale
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        reader = (ffmpeg.input(str(args.input)).output("pipe:", format="rawvideo", pix_fmt="rgb24")
                  .run_async(pipe_stdout=True, quiet=True))
        writer = (ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width * scale}x{height * scale}",
                               framerate=rate)
                  .output(str(Path(folder) / "naive.mp4"), vcodec="libx264", pix_fmt="yuv420p", crf=18)
                  .overwrite_output().run_async(pipe_stdin=True, quiet=True))
        frames, size = 0, width * height * 3
        with torch.inference_mode():
            while True:
                raw = reader.stdout.read(size)
                if len(raw) < size:
                    break
                image = torch.from_numpy(np.frombuffer(raw, np.uint8).reshape(height, width, 3).copy())
                tensor = image.permute(2, 0, 1).unsqueeze(0).float().div(255).to(upscaler.device)
                result = model(tensor).clamp(0, 1).mul(255).round().byte()[0].permute(1, 2, 0).cpu().numpy()
                writer.stdin.write(result.tobytes())
                frames += 1
        writer.stdin.close()
        reader.wait()
        writer.wait()
        seconds = time.perf_counter() - started
    return {"frames": frames, "seconds": seconds, "peak_device_mib": peak_device_mib(upscaler.device)}


def run_stage(args: argparse.Namespace) -> None:
    result = globals()[f"stage_{args.stage}"](args)
    result["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(result))


# --------------------------------------------------------------------------- orchestration
def stage_command(args: argparse.Namespace, stage: str, clip: Path) -> list[str]:
    command = [sys.executable, __file__, "--stage", stage, "--input", str(clip), "--model", args.model,
               "--scale", str(args.scale), "--batch-size", str(args.batch_size)]
    for option in ("device", "precision", "weights"):
        if getattr(args, option):
            command += [f"--{option}", str(getattr(args, option))]
    return command


def measure(args: argparse.Namespace, stage: str, clip: Path) -> dict:
    completed = subprocess.run(stage_command(args, stage, clip), capture_output=True, text=True)
    if completed.returncode:
        return {"error": (completed.stderr.strip().splitlines() or ["failed"])[-1]}
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["fps"] = result["frames"] / result["seconds"] if result["seconds"] else None
    return result


def make_clip(folder: Path, args: argparse.Namespace, seconds: float) -> Path:
    from make_demo_clip import write_clip

    width, height = (int(part) for part in args.size.lower().split("x"))
    path = folder / f"clip-{width}x{height}-{seconds:g}s.mp4"
    write_clip(path, seconds, width, height, args.fps)
    return path


def machine() -> str:
    import os

    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    text = f"{cpu}, {os.cpu_count()} CPU(s)"
    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name()}"
    return text


def print_table(rows: dict[str, dict]) -> None:
    print(f"{'stage':<10} {'frames':>7} {'seconds':>9} {'fps':>9} {'peak RSS MiB':>13} {'peak device MiB':>16}")
    for stage, row in rows.items():
        if "error" in row:
            print(f"{stage:<10} failed: {row['error']}")
            continue
        device = row.get("peak_device_mib")
        print(f"{stage:<10} {row['frames']:>7} {row['seconds']:>9.2f} {row['fps']:>9.2f} "
              f"{row['peak_rss_mib']:>13.0f} {'-' if device is None else f'{device:.0f}':>16}")


def benchmark(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        clip = args.input or make_clip(Path(folder), args, args.seconds)
        width, height, frames = clip_size(clip)
        stages = [s for s in STAGES if s not in args.skip]
        rows = {stage: measure(args, stage, clip) for stage in stages}
    fps = {stage: row.get("fps") for stage, row in rows.items() if row.get("fps")}
    summary: dict[str, float] = {}
    parts = [fps[s] for s in ("decode", "model", "encode") if s in fps]
    if parts and "pipeline" in fps:
        summary["overlap (pipeline / slowest stage)"] = fps["pipeline"] / min(parts)
    if "naive" in fps and "pipeline" in fps:
        summary["speed-up over naive"] = fps["pipeline"] / fps["naive"]
    return {"clip": f"{width}x{height}, {frames} frames", "weights": weights_source(args)[0], "stages": rows,
            "summary": summary}


def memory_check(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        short = make_clip(Path(folder), args, args.seconds)
        long = make_clip(Path(folder), args, args.seconds * 10)
        rows = {"pipeline 1x": measure(args, "pipeline", short), "pipeline 10x": measure(args, "pipeline", long)}
    summary = {}
    if all("peak_rss_mib" in row for row in rows.values()):
        base, longer = rows["pipeline 1x"]["peak_rss_mib"], rows["pipeline 10x"]["peak_rss_mib"]
        summary["peak RSS growth, 10x longer clip (%)"] = 100 * (longer - base) / base
    return {"clip": f"{args.size}, {args.seconds:g} s and {args.seconds * 10:g} s",
            "weights": weights_source(args)[0], "stages": rows, "summary": summary}


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--input", type=Path, help="a clip to use (default: a synthetic H.264 clip)")
    parser.add_argument("--size", default="320x180", help="synthetic clip size (default 320x180)")
    parser.add_argument("--seconds", type=float, default=2.0, help="synthetic clip length (default 2)")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--model", default="vapsr", choices=("vapsr", "vapsr-s"))
    parser.add_argument("--scale", type=int, default=2, choices=(2, 3, 4))
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when present)")
    parser.add_argument("--precision", default=None, help="fp16/bf16/fp32 (default fp16 on CUDA, fp32 on CPU)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--skip", nargs="*", default=[], choices=STAGES, help="stages to leave out")
    parser.add_argument("--memory-check", action="store_true",
                        help="only the pipeline, on the clip and on one 10x longer: peak RSS must stay flat")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)  # internal: one stage, JSON out
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    if args.stage:
        run_stage(args)
        return 0
    started = datetime.now(UTC)
    report = memory_check(args) if args.memory_check else benchmark(args)
    report.update({"machine": machine(), "date": started.strftime("%Y-%m-%d %H:%M UTC"),
                   "command": " ".join(["python", "scripts/benchmark.py", *(argv or sys.argv[1:])]),
                   "device": args.device or "auto", "batch_size": args.batch_size})
    print(f"{report['machine']} | {report['date']} | clip {report['clip']} | weights {report['weights']}")
    print_table(report["stages"])
    for name, value in report["summary"].items():
        print(f"{name}: {value:.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
