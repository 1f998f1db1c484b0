"""``vapsr-video eval``: PSNR/SSIM of VapSR weights on Set5, Set14 and B100, as the papers measure them."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from vapsr_video.errors import InputError, OutputError, WeightsError
from vapsr_video.evaluation.benchmark_sets import (
    BENCHMARKS_SUBFOLDER,
    DATA_ENV,
    REFERENCE_FILE,
    STANDARD_SETS,
    benchmark_images,
    data_folder,
)
from vapsr_video.evaluation.evaluate import BICUBIC, SetResult, evaluate_bicubic, evaluate_upscaler
from vapsr_video.inference.devices import PRECISIONS
from vapsr_video.inference.upscaler import Upscaler
from vapsr_video.model.vapsr import VARIANTS
from vapsr_video.model.weights import bundled_weights_path, load_model
from vapsr_video.safe_output import atomic_output

PROTOCOL = ("MATLAB-bicubic LR from the HR image (cropped to a multiple of the scale); output clamped, x255, "
            "rounded; PSNR/SSIM on the BT.601 Y channel, border = scale; mean over the images of a set")
DEFAULT_REFERENCE = ""  # --reference without a file: the one in $VAPSR_VIDEO_DATA


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vapsr-video eval",
        description="Measure PSNR/SSIM (Y channel, as in the SR papers) of VapSR weights and of bicubic "
                    "on the benchmark sets.",
    )
    parser.add_argument("--weights", nargs="+", metavar="FILE",
                        help="checkpoints to evaluate (.pth or .safetensors); default: the bundled weights")
    parser.add_argument("--sets", nargs="+", default=list(STANDARD_SETS), metavar="SET",
                        help=f"benchmark sets (default: {' '.join(STANDARD_SETS)})")
    parser.add_argument("--data", metavar="DIR", default=None,
                        help=f"folder holding SET/HR/*.png for each set (default: ${DATA_ENV}/{BENCHMARKS_SUBFOLDER})")
    parser.add_argument("--json", metavar="FILE", dest="json_path", default=None,
                        help="also write the results (with per-image scores) as JSON, updated after each set; "
                             "replaces FILE")
    parser.add_argument("--reference", nargs="?", const=DEFAULT_REFERENCE, default=None, metavar="FILE",
                        help="show the difference to reference results (default file: "
                             f"${DATA_ENV}/{REFERENCE_FILE}); weights are matched by file name")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")
    parser.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32",
                        help="arithmetic (default fp32, the precision the reference numbers use)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def bundled_weight_files() -> list[Path]:
    """Every bundled weights file this installation has."""
    found = []
    for variant in VARIANTS:
        for scale in (2, 3, 4):
            try:
                found.append(bundled_weights_path(variant, scale))
            except WeightsError:
                continue
    return found


def load_reference(path: str | Path) -> dict:
    """The reference results in ``path`` (empty: the file in ``$VAPSR_VIDEO_DATA``)."""
    path = Path(path) if path else data_folder("pass --reference FILE") / REFERENCE_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no reference results file (pass --reference FILE)") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable reference results file ({exc})") from None


def reference_for(result: SetResult, reference: dict) -> tuple[float, float] | None:
    """The reference (PSNR, SSIM) for a row, if the reference file has one."""
    if result.model == BICUBIC:
        entry = reference.get("bicubic", {}).get(f"x{result.scale}", {}).get(result.set_name)
        return (float(entry[0]), float(entry[1])) if entry else None
    entry = reference.get("measured", {}).get(result.model, {}).get(result.set_name)
    return (float(entry["psnr"]), float(entry["ssim"])) if entry else None


def format_table(results: Sequence[SetResult], reference: dict | None = None) -> str:
    header = ["model", "scale", "set", "images", "PSNR", "SSIM"]
    if reference is not None:
        header += ["ref PSNR", "dPSNR", "ref SSIM", "dSSIM"]
    rows = [header]
    for result in results:
        row = [result.model, f"x{result.scale}", result.set_name, str(result.images),
               f"{result.psnr:.4f}", f"{result.ssim:.5f}"]
        if reference is not None:
            expected = reference_for(result, reference)
            if expected is None:
                row += ["-", "-", "-", "-"]
            else:
                row += [f"{expected[0]:.4f}", f"{result.psnr - expected[0]:+.4f}",
                        f"{expected[1]:.5f}", f"{result.ssim - expected[1]:+.5f}"]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]

    def line(row: list[str]) -> str:
        # Names left-aligned, numbers right-aligned.
        cells = [cell.ljust(widths[i]) if i < 3 else cell.rjust(widths[i]) for i, cell in enumerate(row)]
        return "  ".join(cells).rstrip()

    lines = [line(row) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _check_json_destination(path: str) -> None:
    folder = Path(path).parent
    if Path(path).is_dir():
        raise OutputError(f"{path}: is a folder; give a file name for --json")
    if not folder.is_dir():
        raise OutputError(f"{path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{path}: folder {folder} is not writable")


def write_json(path: str, results: Sequence[SetResult], *, device: str, precision: str, argv: Sequence[str]) -> None:
    report = {
        "protocol": PROTOCOL,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": "vapsr-video eval " + " ".join(argv),
        "device": device,
        "precision": precision,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "results": [result.to_dict() for result in results],
    }
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(report, indent=1) + "\n")


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.json_path:
        _check_json_destination(args.json_path)
    reference = load_reference(args.reference) if args.reference is not None else None
    weight_files = [Path(w) for w in args.weights] if args.weights else bundled_weight_files()
    if not weight_files:
        raise WeightsError(
            "no bundled weights in this installation yet; pass --weights FILE ... "
            "(e.g. the VapSR authors' VapSR_X4.pth, see docs/evaluation.md)"
        )
    # Check every set and load every file first, so that a mistake fails before minutes of work.
    for set_name in args.sets:
        benchmark_images(set_name, args.data)
    models = [(path.name, load_model(path)) for path in weight_files]

    def progress(what: str) -> None:
        if not args.quiet:
            print(what, file=sys.stderr, flush=True)

    def save(results: list[SetResult], device: str) -> None:
        # Rewritten after every set, so that an interrupted long run keeps what it measured.
        if args.json_path:
            write_json(args.json_path, results, device=device, precision=args.precision, argv=argv)

    results: list[SetResult] = []
    device = "cpu"
    for scale in sorted({model.scale for _, model in models}):
        for label, model in models:
            if model.scale != scale:
                continue
            upscaler = Upscaler(model=model, device=args.device, precision=args.precision)
            device = str(upscaler.device)
            for set_name in args.sets:
                progress(f"{label} x{scale} on {set_name} ...")
                results += evaluate_upscaler(upscaler, [set_name], label=label, data_dir=args.data)
                save(results, device)
        progress(f"bicubic x{scale} ...")
        results += evaluate_bicubic(scale, args.sets, data_dir=args.data)
        save(results, device)

    print(format_table(results, reference))
    if args.json_path:
        progress(f"results written to {args.json_path}")
    return 0
