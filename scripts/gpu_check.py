#!/usr/bin/env python3
"""One-command GPU validation of vapsr-video: at most about 8 minutes on one GPU.

    python scripts/gpu_check.py [--device cuda:0] [--deadline 460] [--skip speed,training] [--weights X2.pth]
    python scripts/gpu_check.py --cpu-smoke       # this script's own logic on a CPU, tiny shapes, < 1 minute

Prints one JSON line per section, most important first, so a run cut off by a time
limit still answers the early questions:

  env         versions, device, device-to-device bandwidth
  precision   fp16 / bf16 / fp32 with and without TF32 against a CPU fp32 reference, in code
              values at 8/10/12 bits, and non-finite output counts
  oom         a forced out-of-memory (under set_per_process_memory_fraction) must be survived by
              splitting the batch, and the requested batch must come back later
  speed       model-only frames/s at batch 1/4/8 for eager, compile and CUDA graphs; channels-last
              against NCHW; the top kernels from the profiler
  pipeline    the video pipeline's frames/s against its slowest stage and a naive synchronous loop;
              device output equal to CPU output through a lossless codec (8 and 10 bits)
  vapoursynth the VapourSynth processor with several threads and streams gives identical frames
  training    ms per iteration before and after a resume

Sections that need CUDA report ``"skipped"`` on a CPU. It uses only the package's public
interfaces (``vapsr_video.Upscaler``, ``vapsr_video.video.pipeline.upscale_video``, the
VapourSynth ``FrameProcessor``, the ``Trainer``). Run it from the repository root.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from vapsr_video import Upscaler  # noqa: E402
from vapsr_video.model.vapsr import ModelConfig, VapSR  # noqa: E402
from vapsr_video.model.weights import load_model  # noqa: E402

SECTIONS = ("env", "precision", "oom", "speed", "pipeline", "vapoursynth", "training")


class Check:
    """Settings and shared state of one run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.smoke = args.cpu_smoke
        self.device = torch.device("cpu" if self.smoke else args.device)
        self.cuda = self.device.type == "cuda"
        self.started = time.perf_counter()
        if self.smoke and not args.weights:
            # The script's logic, not the model's numbers, is what a smoke run checks: a small network
            # keeps it under a minute on a busy 2-core CPU.
            torch.manual_seed(0)
            self.model = VapSR(ModelConfig(scale=2, num_feat=16, num_blocks=2, d_atten=16)).eval()
            self.weights = "small random VapSR (smoke run)"
        else:
            self.model = load_model(args.weights, variant="vapsr", scale=2)
            self.weights = args.weights or "bundled vapsr-x2"

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def emit(self, section: str, **data: object) -> None:
        print(json.dumps({"section": section, "t": round(self.elapsed(), 1), **data}, default=str), flush=True)

    def upscaler(self, **options: object) -> Upscaler:
        return Upscaler(model=copy.deepcopy(self.model), device=self.device, **options)

    def seconds_per_call(self, work: Callable[[], object], repeats: int) -> float:
        """Mean wall time of ``work`` (device work included)."""
        self.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            work()
        self.synchronize()
        return (time.perf_counter() - start) / repeats

    def synchronize(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)


def test_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1]: gradients, a saturated block, noise and thin white lines (worst for ringing)."""
    generator = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    image = torch.stack([x, y, (x + y) / 2])
    image[:, height // 4:height // 2, width // 4:width // 2] = torch.tensor([0.95, 0.05, 0.5])[:, None, None]
    image += 0.04 * torch.randn(3, height, width, generator=generator)
    image[:, :, ::8] = 1.0
    return image.clamp(0, 1)[None]


def code_errors(result: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    difference = (result.double().cpu() - reference).abs()
    errors = {f"max_err_{bits}bit": round(float(difference.max()) * ((1 << bits) - 1), 2) for bits in (8, 10, 12)}
    errors["mean_err_10bit"] = round(float(difference.mean()) * 1023, 3)
    return errors


# ----------------------------------------------------------------------------------------------- sections
def section_env(check: Check) -> dict[str, object]:
    info: dict[str, object] = {"torch": torch.__version__, "cuda": torch.version.cuda,
                               "cudnn": torch.backends.cudnn.version() if check.cuda else None,
                               "python": sys.version.split()[0], "cpus": os.cpu_count(), "device": str(check.device),
                               "weights": check.weights}
    try:
        import av

        info["pyav"] = av.__version__
    except ImportError:
        info["pyav"] = None
    if check.cuda:
        properties = torch.cuda.get_device_properties(check.device)
        info.update(name=properties.name, sms=properties.multi_processor_count,
                    memory_gib=round(properties.total_memory / 2**30, 1))
        source = torch.empty(1 << 30, dtype=torch.uint8, device=check.device)
        target = torch.empty_like(source)
        target.copy_(source)
        seconds = check.seconds_per_call(lambda: target.copy_(source), 10)
        info["copy_tb_per_s_read_plus_write"] = round(2 * source.numel() / seconds / 1e12, 2)
        del source, target
    return info


def section_precision(check: Check) -> dict[str, object]:
    size = 48 if check.smoke else 256
    frames = test_image(size, size)
    reference = Upscaler(model=copy.deepcopy(check.model), device="cpu", precision="fp32")(frames).double()
    cases: list[tuple[str, bool | None]] = [("bf16", None), ("fp32", None)]
    if check.cuda:
        cases = [("fp16", True), ("fp16", False), ("bf16", True), ("fp32-tf32", True), ("fp32", True)]
    results = {}
    for name, channels_last in cases:
        upscaler = check.upscaler(precision=name.split("-")[0], channels_last=channels_last)
        tf32 = name == "fp32-tf32"
        if tf32:
            torch.backends.cudnn.allow_tf32 = True  # what "fp32" on CUDA meant before this project turned it off
        try:
            output = upscaler(frames.to(check.device))
        finally:
            if tf32:
                torch.backends.cudnn.allow_tf32 = False
        label = name if channels_last is None else f"{name}_{'nhwc' if channels_last else 'nchw'}"
        results[label] = {**code_errors(output, reference), "nonfinite_pixels": upscaler.nonfinite_pixels}
    return {"size": size, "results": results,
            "expect": "fp32 ~0; fp16 <= ~1 code at 8 bits, ~3 at 10, ~11 at 12; bf16 ~4/18/73; no non-finite"}


def section_oom(check: Check) -> dict[str, object]:
    if not check.cuda:
        return {"skipped": "needs CUDA (the CPU path is tested in tests/test_upscaler_memory.py)"}
    upscaler = check.upscaler()
    torch.backends.cudnn.benchmark = False  # no autotuning of every split shape
    frames = torch.rand(4, 3, 1080, 1920, device=check.device).half()
    size = (1080, 1920)
    upscaler(frames[:2])
    check.synchronize()
    torch.cuda.reset_peak_memory_stats(check.device)
    upscaler(frames[:2])
    check.synchronize()
    two_frames = torch.cuda.max_memory_allocated(check.device)
    total = torch.cuda.get_device_properties(check.device).total_memory
    cap = int(two_frames * 1.6)  # two frames fit, four do not
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(cap / total, check.device)
    started = time.perf_counter()
    try:
        capped = upscaler(frames)
        check.synchronize()
        outcome = "ok"
    except Exception as exc:  # reported, not raised: the next sections still run
        capped, outcome = None, f"{type(exc).__name__}: {str(exc)[:200]}"
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, check.device)
    plan_after = upscaler.memory.attempt(size)
    recovery_s = time.perf_counter() - started
    calls = 0
    while upscaler.memory.attempt(size) != upscaler.memory.requested and calls < 64:
        upscaler(frames)  # without the cap: the planner should try the full batch again after a while
        calls += 1
    equal = None
    if capped is not None:
        equal = float((capped.float() - upscaler(frames).float()).abs().max())
    return {"result": outcome, "two_frames_gib": round(two_frames / 2**30, 2), "cap_gib": round(cap / 2**30, 2),
            "seconds": round(recovery_s, 2), "plan_after": str(plan_after), "calls_until_full_batch_again": calls,
            "max_diff_capped_vs_free": equal,
            "expect": "ok; plan_after batch=2 tile=0 (no tiling); full batch after 8 calls (16 chunks of 2); diff ~0"}


def section_speed(check: Check) -> dict[str, object]:
    height, width = (24, 40) if check.smoke else (540, 960)
    batches = (1, 2) if check.smoke else (1, 4, 8)
    repeats = 2 if check.smoke else 10
    engines = ["eager"]
    skipped = {}
    if check.cuda:
        engines.append("cuda-graphs")
    else:
        skipped["cuda-graphs"] = "needs CUDA"
    if check.smoke and not check.args.compile:
        skipped["compile"] = "not in --cpu-smoke (about a minute per shape on a small CPU); add --compile"
    else:
        engines.append("compile")
    results: dict[str, object] = {}
    for engine in engines:
        upscaler = check.upscaler(engine=engine)
        # compiling costs tens of seconds per shape on a GPU host: one batch size tells enough
        for batch in (batches if engine != "compile" or check.smoke else (4,)):
            if check.elapsed() > check.args.deadline - 30:
                results[f"{engine}_bs{batch}"] = "skipped: deadline"
                continue
            frames = torch.rand(batch, 3, height, width, device=check.device).to(upscaler.dtype)
            warm_start = time.perf_counter()
            for _ in range(3):  # compile / capture / cuDNN autotuning happen here
                upscaler(frames)
            check.synchronize()
            warm_s = time.perf_counter() - warm_start
            seconds = check.seconds_per_call(lambda u=upscaler, f=frames: u(f), repeats)
            results[f"{engine}_bs{batch}"] = {"fps": round(batch / seconds, 1), "warmup_s": round(warm_s, 1)}
    if check.cuda:
        for channels_last in (True, False):
            upscaler = check.upscaler(channels_last=channels_last)
            frames = torch.rand(4, 3, height, width, device=check.device).half()
            for _ in range(3):
                upscaler(frames)
            seconds = check.seconds_per_call(lambda u=upscaler, f=frames: u(f), repeats)
            results[f"eager_bs4_{'nhwc' if channels_last else 'nchw'}"] = {"fps": round(4 / seconds, 1)}
    precision = "fp16" if check.cuda else "fp32"  # the Upscaler's default on each device
    return {"shape": f"{width}x{height}", "precision": precision, "results": results,
            "engines_skipped": skipped, "top_kernels": top_kernels(check, height, width)}


def top_kernels(check: Check, height: int, width: int) -> list[dict[str, object]]:
    from torch.profiler import ProfilerActivity, profile

    upscaler = check.upscaler()
    frames = torch.rand(4, 3, height, width, device=check.device).to(upscaler.dtype)
    upscaler(frames)
    check.synchronize()
    activity = ProfilerActivity.CUDA if check.cuda else ProfilerActivity.CPU
    with profile(activities=[activity]) as profiler:
        upscaler(frames)
        check.synchronize()
    key = "device_time_total" if check.cuda else "self_cpu_time_total"
    events = sorted(profiler.key_averages(), key=lambda e: getattr(e, key, 0), reverse=True)[:8]
    return [{"name": e.key[:70], "ms": round(getattr(e, key, 0) / 1000, 2), "calls": e.count} for e in events]


def write_clip(path: Path, seconds: float, width: int, height: int, pix_fmt: str = "yuv420p",
               codec: str = "libx264") -> None:
    import av
    from make_demo_clip import picture

    rate = 25
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.colorspace, stream.codec_context.color_range = 1, 1
        if codec == "libx264":
            stream.codec_context.options = {"crf": "16", "preset": "veryfast"}
        for index in range(round(seconds * rate)):
            frame = av.VideoFrame.from_ndarray(picture(index, width, height, rate), format="rgb24")
            frame = frame.reformat(format=pix_fmt)
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def rgb_codes(path: Path) -> list[np.ndarray]:
    """Decoded frames as int32 RGB codes at the stream's bit depth."""
    import av

    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if "10" in frame.format.name:
                frames.append(frame.reformat(format="rgb48le").to_ndarray().astype(np.int32) >> 6)
            else:
                frames.append(frame.reformat(format="rgb24").to_ndarray().astype(np.int32))
    return frames


def compare_videos(first: Path, second: Path) -> dict[str, object]:
    a, b = rgb_codes(first), rgb_codes(second)
    worst = max((int(np.abs(x - y).max()) for x, y in zip(a, b, strict=False)), default=None)
    return {"frames": [len(a), len(b)], "max_code_diff": worst}


def frames_per_second(count: int, seconds: float) -> float:
    return round(count / max(seconds, 1e-9), 1)


def section_pipeline(check: Check) -> dict[str, object]:
    import av

    from vapsr_video.video.colour import ColourSpec, plane_layout, rgb_to_yuv, yuv_to_rgb
    from vapsr_video.video.pipeline import EncodeOptions, upscale_video

    sys.path.insert(0, str(REPOSITORY / "scripts"))
    width, height, seconds = (64, 48, 0.24) if check.smoke else (960, 540, 8)
    upscaler = check.upscaler()
    result: dict[str, object] = {"size": f"{width}x{height}"}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        clip = folder / "input.mp4"
        write_clip(clip, seconds, width, height)
        upscale_video(clip, folder / "warm.mkv", upscaler, time_range=(0, 0.12), copy_streams=False)
        started = time.perf_counter()
        done = upscale_video(clip, folder / "out.mkv", upscaler, batch_size=4)
        result["pipeline_fps"] = frames_per_second(done.frames, time.perf_counter() - started)
        # stages alone: decode, colour + model on the device, encode (of the pipeline's own output)
        started, decoded = time.perf_counter(), 0
        with av.open(str(clip)) as container:
            container.streams.video[0].thread_type = "AUTO"
            for _ in container.decode(video=0):
                decoded += 1
        stages = {"decode_fps": frames_per_second(decoded, time.perf_counter() - started)}
        source, target = plane_layout("yuv420p", width, height), plane_layout("yuv420p", 2 * width, 2 * height)
        spec = ColourSpec(matrix=1, full_range=False)
        samples = torch.randint(16, 235, (4, source.samples), dtype=torch.uint8, device=check.device)

        def device_step() -> torch.Tensor:
            return rgb_to_yuv(upscaler(yuv_to_rgb(samples, source, spec).clamp_(0, 1)), target, spec)

        device_step()
        stages["colour_and_model_fps"] = frames_per_second(4, check.seconds_per_call(device_step, 2 if check.smoke
                                                                                      else 10))
        started, encoded = time.perf_counter(), 0
        with av.open(str(folder / "encoded.mp4"), "w") as output, av.open(str(folder / "out.mkv")) as upscaled:
            stream = output.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = 2 * width, 2 * height, "yuv420p"
            stream.codec_context.options = {"crf": "18"}
            for frame in upscaled.decode(video=0):
                frame.pts, frame.time_base = encoded, Fraction(1, 25)
                output.mux(stream.encode(frame))
                encoded += 1
            output.mux(stream.encode(None))
        stages["encode_fps_with_decode_of_output"] = frames_per_second(encoded, time.perf_counter() - started)
        result["stages"] = stages
        result["slowest_stage_fps"] = min(stages.values())
        result["naive_loop_fps"] = naive_loop_fps(clip, folder / "naive.mp4", upscaler, limit=8 if check.smoke else 50)
        # device against CPU through a lossless codec
        lossless = EncodeOptions(codec="ffv1")
        cpu = Upscaler(model=copy.deepcopy(check.model), device="cpu", precision="fp32")
        equality = {}
        for name, pix_fmt in (("8bit", "yuv420p"), ("10bit", "yuv420p10le")):
            short = folder / f"short_{name}.mkv"
            write_clip(short, 0.24, width, height, pix_fmt=pix_fmt)
            upscale_video(short, folder / f"device_{name}.mkv", upscaler, lossless)
            upscale_video(short, folder / f"cpu_{name}.mkv", cpu, lossless)
            equality[name] = compare_videos(folder / f"device_{name}.mkv", folder / f"cpu_{name}.mkv")
        result["device_vs_cpu_lossless"] = equality
    result["expect"] = ("pipeline_fps close to slowest_stage_fps and well above naive_loop_fps; lossless diff "
                        "<= ~2 codes at 8 bits and ~6 at 10 bits with fp16 (0 on the CPU)")
    return result


def naive_loop_fps(clip: Path, target: Path, upscaler: Upscaler, limit: int) -> float:
    """One frame at a time: decode, RGB on the host, model, back to the host, encode; nothing overlaps."""
    import av

    started, count = time.perf_counter(), 0
    with av.open(str(clip)) as source, av.open(str(target), "w") as output:
        stream = None
        for frame in source.decode(video=0):
            rgb = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1).float().div_(255)
            upscaled = upscaler(rgb.to(upscaler.device)).mul(255).round_().byte().permute(1, 2, 0).cpu().numpy()
            if stream is None:
                stream = output.add_stream("libx264", rate=25)
                stream.height, stream.width = upscaled.shape[:2]
                stream.pix_fmt = "yuv420p"
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(upscaled), format="rgb24")
            picture.pts = count
            output.mux(stream.encode(picture))
            count += 1
            if count >= limit:
                break
        if stream is not None:
            output.mux(stream.encode(None))
    return frames_per_second(count, time.perf_counter() - started)


def section_vapoursynth(check: Check) -> dict[str, object]:
    from vapsr_video.vapoursynth.formats import FLOAT, RGB, ClipDescription
    from vapsr_video.vapoursynth.processor import FilterOptions, FrameProcessor

    width, height = (40, 24) if check.smoke else (960, 540)
    frames = [test_image(height, width, seed=i)[0].numpy().copy() for i in range(4)]
    results = {}
    for fp16 in ((None, True) if check.cuda else (None,)):
        processor = FrameProcessor(ClipDescription(width, height, RGB, FLOAT, 32, "RGBS"),
                                   FilterOptions(device=str(check.device), fp16=fp16, num_streams=2))

        def planes() -> list[np.ndarray]:
            return [np.empty((2 * height, 2 * width), np.float32) for _ in range(3)]

        single = [planes() for _ in frames]
        for frame, target in zip(frames, single, strict=True):
            processor.process(list(frame), target)
        threaded = [[planes() for _ in frames] for _ in range(4)]  # four threads, each does all frames
        errors: list[BaseException] = []
        started = time.perf_counter()
        threads = [threading.Thread(target=process_all, args=(processor, frames, outputs, errors))
                   for outputs in threaded]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
        difference = max(float(np.abs(np.stack(a) - np.stack(b)).max())
                         for outputs in threaded for a, b in zip(outputs, single, strict=True))
        results["fp16" if fp16 else "default"] = {"threads": 4, "streams": 2,
                                                  "fps": frames_per_second(4 * len(frames), seconds),
                                                  "max_diff_vs_one_thread": difference,
                                                  "errors": [repr(e) for e in errors]}
    return {"results": results, "expect": "max_diff 0.0 (or a few fp16 ulps), no errors"}


def process_all(processor: object, frames: list[np.ndarray], outputs: list[list[np.ndarray]],
                errors: list[BaseException]) -> None:
    try:
        for frame, target in zip(frames, outputs, strict=True):
            processor.process(list(frame), target)
    except BaseException as exc:  # collected and reported by the section
        errors.append(exc)


def section_training(check: Check) -> dict[str, object]:
    from vapsr_video.imaging.image_files import StillImage, write_image
    from vapsr_video.training.trainer import TrainConfig, Trainer

    variant, patch, batch, iterations = ("vapsr-s", 12, 2, 2) if check.smoke else ("vapsr", 48, 16, 40)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        images = folder / "images"
        images.mkdir()
        generator = np.random.default_rng(0)
        for index in range(4):
            picture = test_image(4 * patch, 4 * patch, seed=index)[0].permute(1, 2, 0).numpy()
            rgb = (picture * 255).round().astype(np.uint8)
            rgb = np.clip(rgb.astype(np.int16) + generator.integers(-3, 4, rgb.shape), 0, 255).astype(np.uint8)
            write_image(images / f"image{index}.png", StillImage(rgb))

        def run(total: int) -> float:
            config = TrainConfig(variant=variant, scale=2, data=[str(images)], out_dir=str(folder / "run"),
                                 iterations=total, batch_size=batch, lr_patch=patch, warmup=1,
                                 checkpoint_every=iterations, validate_every=10**9, log_every=10**9,
                                 device=str(check.device))
            trainer = Trainer(config)
            started = time.perf_counter()
            trainer.train()
            return (time.perf_counter() - started) / iterations * 1000

        before = run(iterations)
        after = run(2 * iterations)  # resumes from the checkpoint at ``iterations``
    return {"ms_per_iteration_before_resume": round(before, 1), "ms_per_iteration_after_resume": round(after, 1),
            "variant": variant, "patch": patch, "batch": batch, "iterations_each": iterations,
            "note": "each figure includes loading the images and writing a checkpoint",
            "expect": "after ~ before (a slower resumed run means state came back on the wrong device)"}


# section -> (function, budget in seconds on a GPU, budget with --cpu-smoke)
RUNNERS: dict[str, tuple[Callable[[Check], dict[str, object]], float, float]] = {
    "env": (section_env, 10, 1),
    "precision": (section_precision, 40, 5),
    "oom": (section_oom, 40, 1),
    "speed": (section_speed, 150, 8),
    "pipeline": (section_pipeline, 120, 10),
    "vapoursynth": (section_vapoursynth, 30, 3),
    "training": (section_training, 60, 10),
}


def run_section(check: Check, name: str) -> None:
    function, gpu_budget, smoke_budget = RUNNERS[name]
    budget = smoke_budget if check.smoke else gpu_budget
    if name in check.args.skip:
        check.emit(name, skipped="--skip")
        return
    if check.elapsed() + budget > check.args.deadline:
        check.emit(name, skipped=f"not enough time left for its {budget:.0f} s budget")
        return
    try:
        check.emit(name, **function(check))
    except Exception as exc:  # one failing section must not hide the answers of the later ones
        check.emit(name, error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc()[-1500:])
    finally:
        if check.cuda:
            torch.cuda.synchronize(check.device)
            torch.cuda.empty_cache()


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny shapes on the CPU: checks this script")
    parser.add_argument("--deadline", type=float, default=None,
                        help="seconds; sections that would not fit are skipped (default 460, 55 with --cpu-smoke)")
    parser.add_argument("--skip", default="", help=f"comma-separated sections to leave out: {', '.join(SECTIONS)}")
    parser.add_argument("--compile", action="store_true", help="with --cpu-smoke: also time torch.compile")
    parser.add_argument("--weights", help="a VapSR x2 checkpoint (default: the bundled x2 weights)")
    args = parser.parse_args(argv)
    args.skip = {name.strip() for name in args.skip.split(",") if name.strip()}
    unknown = args.skip - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    if args.deadline is None:
        args.deadline = 55.0 if args.cpu_smoke else 460.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    if not args.cpu_smoke:
        if not torch.cuda.is_available():
            print(json.dumps({"section": "env", "error": "no CUDA device; use --cpu-smoke to check the script"}))
            return 1
        torch.cuda.set_device(torch.device(args.device))
    check = Check(args)
    for name in SECTIONS:
        run_section(check, name)
    check.emit("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
