"""``vapsr-video train``: train a VapSR variant from folders of HR images."""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from vapsr_video.model.vapsr import VARIANTS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vapsr-video train", description=__doc__)
    parser.add_argument("data", nargs="+", help="folders of HR training images (searched recursively)")
    parser.add_argument("--out", required=True, help="run folder: checkpoint, log and the exported weights")
    parser.add_argument("--model", choices=VARIANTS, default="vapsr")
    parser.add_argument("--scale", type=int, choices=(2, 3, 4), default=2)
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--iterations", type=int, help="number of optimiser steps")
    budget.add_argument("--time-budget", type=float, metavar="MINUTES",
                        help="choose the iteration count that fits this many minutes (measured at start)")
    limit = parser.add_mutually_exclusive_group()
    limit.add_argument("--time-limit", type=float, metavar="MINUTES",
                       help="stop, checkpoint and export this many minutes after starting, done or not; "
                            "alone, the iteration count is fitted to the time left after loading the data")
    limit.add_argument("--deadline", type=float, metavar="UNIX_TIME",
                       help="the same as --time-limit, as a wall-clock time (for scripts running several trainings)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch", type=int, default=48, help="LR patch size (default 48)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--min-lr", type=float, default=1e-5)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--validate-every", type=int, default=250)
    parser.add_argument("--log-every", type=int, default=50, help="iterations between log lines")
    parser.add_argument("--validation", help="folder of HR images for the periodic PSNR (e.g. Set5/HR)")
    parser.add_argument("--warm-start", metavar="WEIGHTS", help="initialise matching tensors from these weights")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's choice)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the model (slower on the CPUs measured so far; see docs/training.md)")
    parser.add_argument("--no-fast-kernels", dest="fast_kernels", action="store_false",
                        help="on the CPU, use PyTorch's own depthwise backward instead of the faster one")
    parser.add_argument("--fp32", dest="bf16", action="store_false",
                        help="compute in float32 throughout (default: bf16 autocast on CUDA; on CPUs with native "
                             "bf16, the 1x1 convolutions in bf16)")
    parser.add_argument("--loss", choices=("l1", "mse"), default="l1",
                        help="pixel loss: l1 (the authors' recipe) or mse, which PSNR measures; for a last "
                             "fine-tuning run from trained weights (see docs/training.md)")
    parser.add_argument("--export-only", action="store_true",
                        help="write the EMA weights of the last checkpoint and stop")
    return parser


def main(argv: Sequence[str]) -> int:
    started = time.time()  # before importing torch: a time limit counts from the command's start
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.iterations or args.time_budget or args.time_limit or args.deadline or args.export_only):
        parser.error("give --iterations, --time-budget, --time-limit or --deadline")
    deadline = args.deadline or (started + args.time_limit * 60 if args.time_limit else 0.0)
    from vapsr_video.training.trainer import TrainConfig, Trainer

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        handlers=[logging.FileHandler(out / "train.log"), logging.StreamHandler()])
    config = TrainConfig(
        variant=args.model, scale=args.scale, data=list(args.data), out_dir=str(out),
        iterations=args.iterations or 0, time_budget=(args.time_budget or 0) * 60,
        deadline=deadline, batch_size=args.batch_size,
        lr_patch=args.patch, lr=args.lr, min_lr=args.min_lr, warmup=args.warmup,
        checkpoint_every=args.checkpoint_every, validate_every=args.validate_every, log_every=args.log_every,
        validation=args.validation,
        seed=args.seed, device=args.device, warm_start=args.warm_start, compile=args.compile, threads=args.threads,
        fast_kernels=args.fast_kernels, bf16=args.bf16, loss=args.loss,
    )
    trainer = Trainer(config)
    if args.export_only:
        if not trainer.try_resume():
            raise SystemExit(f"{trainer.checkpoint_path}: no checkpoint to export")
        trainer.adopt_recorded_recipe()
        print(trainer.export())
        return 0
    print(trainer.train())
    return 0
