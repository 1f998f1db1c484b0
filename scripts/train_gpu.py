#!/usr/bin/env python3
"""Fine-tune all four bundled VapSR models side by side on one GPU within a fixed wall time.

    python scripts/train_gpu.py ../shared/data/train/T91 ../shared/data/train/BSD200 \\
        --benchmarks ../shared/data/benchmarks --out runs/gpu-$(date +%Y%m%d-%H%M)

Each model is one ``vapsr-video train`` process (bf16 autocast, channels-last,
losses read only at log lines), warm-started from the current weights (the
bundled ones, or ``--from DIR``), with a time limit so that training, export and
the quality table all end within ``--minutes`` (default 9) of the start. The
iteration count of each run is fitted to the time it has left after loading its
data; the four runs share the GPU, so each measures its speed with the others
running.

The output folder holds, per model, ``<name>/`` with ``train.log``,
``console.log``, ``checkpoint.pt`` and the new ``<name>.safetensors``; and
``quality.md`` / ``quality.json``: PSNR/SSIM (Y channel, evaluation protocol) of
the starting and the new weights on the benchmark sets, and their worst flat-colour
error (``vapsr_video/evaluation/flat_colours.py``). Exit status 0 when every run
exported its weights, 1 otherwise (the table then has the runs that did). Ctrl-C,
SIGTERM or SIGHUP stops every run at the end of its iteration in progress, with a
checkpoint that the same command resumes from; the exit status is then 128 + the
signal number, and no table is written.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

MODELS = ("vapsr-x2", "vapsr-x3", "vapsr-x4", "vapsr-s-x4")


def parse_model(name: str) -> tuple[str, int]:
    variant, _, scale = name.rpartition("-x")
    return variant, int(scale)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="+", help="folders of HR training images")
    parser.add_argument("--out", required=True, help="folder for all runs, logs and the quality table")
    parser.add_argument("--minutes", type=float, default=9.0, help="wall time for everything (default 9)")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (for trying the script out)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--from", dest="weights_dir", metavar="DIR",
                        help="starting weights <name>.safetensors in DIR (default: the bundled weights)")
    parser.add_argument("--benchmarks", metavar="DIR",
                        help="folder with Set5/HR, Set14/HR, ...: validation during training and the quality table")
    parser.add_argument("--sets", nargs="+", default=["Set5", "Set14"], help="sets for the quality table")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--patch", type=int, default=48, help="LR patch size")
    parser.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (fine-tuning)")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--compile", action="store_true", help="torch.compile each model (costs compile time)")
    parser.add_argument("--no-colour-check", dest="colour_check", action="store_false",
                        help="leave the flat-colour column out of the quality table")
    parser.add_argument("--reserve", type=float, metavar="SECONDS",
                        help="time kept for the quality table (default: 20%% of --minutes, at most 60 s)")
    return parser


def starting_weights(name: str, weights_dir: str | None) -> Path:
    from vapsr_video.model.weights import bundled_weights_path

    if weights_dir:
        return Path(weights_dir) / f"{name}.safetensors"
    return bundled_weights_path(*parse_model(name))


def threads_per_run(args: argparse.Namespace) -> int:
    return max(1, (os.cpu_count() or 1) // len(args.models))


def run_environment(threads: int) -> dict[str, str]:
    """The environment of one training process: its BLAS and OpenMP pools sized like its torch pool.

    numpy's OpenBLAS (used while the LR patches are prepared) would otherwise start one
    busy-waiting thread per core in every process; with four processes on a 2-core machine
    they starved each other for minutes. Values the user set are kept.
    """
    env = dict(os.environ)
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(variable, str(threads))
    return env


def train_command(args: argparse.Namespace, name: str, weights: Path, deadline: float) -> list[str]:
    variant, scale = parse_model(name)
    threads = threads_per_run(args)
    command = [sys.executable, "-m", "vapsr_video", "train", *args.data, "--out", str(Path(args.out) / name),
               "--model", variant, "--scale", str(scale), "--deadline", f"{deadline:.3f}",
               "--batch-size", str(args.batch_size), "--patch", str(args.patch), "--lr", str(args.lr),
               "--warmup", str(args.warmup), "--warm-start", str(weights), "--device", args.device,
               "--threads", str(threads), "--log-every", "100", "--validate-every", "1000",
               "--checkpoint-every", "500"]
    if args.benchmarks:
        command += ["--validation", str(Path(args.benchmarks) / "Set5" / "HR")]
    if args.compile:
        command.append("--compile")
    return command


class RunStopper:
    """SIGINT, SIGTERM and SIGHUP stop the training runs, not only this script: each run is sent SIGTERM,
    on which it checkpoints and exits; this script then waits for them and exits 128 + the signal.
    Left to the default, a SIGTERM would end this script and leave the runs training on their own.

    Each run is sent one SIGTERM per stop request (a second one tells a run to stop at once, without
    its checkpoint), so a request only reaches the runs it has not reached yet; a second request to
    this script is passed on to all of them."""

    def __init__(self, processes: dict[str, subprocess.Popen]) -> None:
        self.processes = processes
        self.signum: int | None = None
        self.signalled: set[str] = set()
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(number) is not signal.SIG_IGN:
                signal.signal(number, self.on_signal)

    def on_signal(self, signum: int, frame: object) -> None:
        again = self.signum is not None
        self.signum = self.signum or signum
        self.stop_runs(again)

    def stop_runs(self, again: bool = False) -> None:
        for name, process in list(self.processes.items()):
            if process.poll() is None and (again or name not in self.signalled):
                self.signalled.add(name)
                process.send_signal(signal.SIGTERM)


def quality_row(name: str, before: Path, after: Path, args: argparse.Namespace) -> dict[str, object]:
    from vapsr_video.evaluation.evaluate import evaluate_upscaler
    from vapsr_video.evaluation.flat_colours import worst_flat_colour_error
    from vapsr_video.inference.upscaler import Upscaler
    from vapsr_video.model.weights import load_model, read_metadata

    row: dict[str, object] = {"model": name, "iterations": read_metadata(after).get("iterations", "?")}
    for label, path in (("before", before), ("after", after)):
        if args.benchmarks:
            upscaler = Upscaler(load_model(path), device=args.device, precision="fp32")
            for result in evaluate_upscaler(upscaler, args.sets, label=label, data_dir=args.benchmarks):
                row[f"{result.set_name} {label}"] = f"{result.psnr:.3f} / {result.ssim:.4f}"
        if args.colour_check:
            worst = worst_flat_colour_error(load_model(path), device=args.device)
            row[f"flat colour {label}"] = f"{worst.worst} on {worst.colour}"
    return row


def write_quality_table(summary: dict, out: Path, header: str) -> str:
    rows = summary["models"]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = [header, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    text = "\n".join(lines) + "\n"
    (out / "quality.md").write_text(text)
    (out / "quality.json").write_text(json.dumps(summary, indent=2) + "\n")
    return text


def main(argv: list[str] | None = None) -> int:
    start, start_wall = time.monotonic(), time.time()
    args = build_parser().parse_args(argv)
    total = args.minutes * 60
    reserve = args.reserve if args.reserve is not None else min(60.0, 0.2 * total)
    out = Path(args.out)
    for folder in args.data:
        if not Path(folder).is_dir():
            print(f"{folder}: no such folder of training images", file=sys.stderr)
            return 3
    weights = {name: starting_weights(name, args.weights_dir) for name in args.models}
    missing = [str(path) for path in weights.values() if not path.is_file()]
    if missing:
        print(f"{', '.join(missing)}: starting weights not found", file=sys.stderr)
        return 5
    out.mkdir(parents=True, exist_ok=True)

    # One wall-clock deadline for all runs: each fits its iterations to the time it has left
    # after starting up and loading its data, and stops there in any case.
    deadline = start_wall + total - reserve
    environment = run_environment(threads_per_run(args))
    processes: dict[str, subprocess.Popen] = {}
    stop = RunStopper(processes)
    for name in args.models:
        if stop.signum is not None:
            break
        (out / name).mkdir(exist_ok=True)
        with open(out / name / "console.log", "w") as console:
            processes[name] = subprocess.Popen(train_command(args, name, weights[name], deadline),
                                               stdout=console, stderr=subprocess.STDOUT,
                                               env=environment)
    if stop.signum is not None:  # it came while the runs were starting: stop the ones it did not reach
        stop.stop_runs()
    print(f"training {', '.join(args.models)} on {args.device} for up to {total - reserve:.0f} s; "
          f"logs in {out}/*/")
    failed = [name for name, process in processes.items() if process.wait() != 0]
    if stop.signum is not None:
        print(f"stopped by {signal.Signals(stop.signum).name}: each run saved a checkpoint in {out}/<model>/; "
              "the same command resumes them", file=sys.stderr)
        return 128 + stop.signum
    for name in failed:
        print(f"{name}: training failed (exit {processes[name].returncode}); see {out / name / 'console.log'}",
              file=sys.stderr)

    trained = time.monotonic() - start
    rows = []
    for name in args.models:
        after = out / name / f"{name}.safetensors"
        if name not in failed and after.is_file():
            rows.append(quality_row(name, weights[name], after, args))
    summary = {"budget_seconds": total, "started": start_wall, "deadline": deadline,
               "training_seconds": round(trained, 1),
               "total_seconds": round(time.monotonic() - start, 1), "models": rows}
    header = (f"# Fine-tuning on {args.device}: {', '.join(args.models)}\n\n"
              f"Training ended {trained:.0f} s after the start, the table {time.monotonic() - start:.0f} s "
              f"(budget {total:.0f} s). PSNR (dB) / SSIM on the Y channel; flat colour: the largest "
              "interior error in 8-bit code values and its colour.")
    print(write_quality_table(summary, out, header))
    return 1 if failed or len(rows) != len(args.models) else 0


if __name__ == "__main__":
    sys.exit(main())
