"""``vapsr-video batch SRC DST``: upscale every video under SRC into the same tree under DST.

Resumable: the job database in ``DST/.vapsr-batch/`` remembers what is done, so
running the same command again after a crash, a reboot or Ctrl-C carries on
where it stopped and never redoes a finished file. Exit codes: 0 everything
done (or skipped), 1 at least one file failed, 2 bad options or folders that
could write into the sources, 4 an unusable job database or a full disk, 130
interrupted; see docs/batch.md. This module only parses and prints: the run itself is
``vapsr_video.batch.run``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from vapsr_video.batch.dispatch import Backend
from vapsr_video.batch.jobs_db import DEFAULT_LEASE_SECONDS
from vapsr_video.batch.local_backend import LocalBackend
from vapsr_video.batch.report import BatchReport
from vapsr_video.batch.run import DB_NAME, BatchSettings, plan_batch, run_batch
from vapsr_video.batch.safety import STATE_DIR_NAME, printable
from vapsr_video.batch.sync import Decision
from vapsr_video.cli.options import (
    add_encoder_arguments,
    add_input_limit_arguments,
    add_model_arguments,
    encode_options_from_arguments,
    model_options_from_arguments,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vapsr-video batch",
        description="Upscale every video under SRC into the same folder tree under DST; resumable "
                    "(run the same command again after a crash or Ctrl-C).",
    )
    parser.add_argument("src", help="folder to read videos from (never written)")
    parser.add_argument("dst", help="folder to write the upscaled videos to (created if needed)")
    parser.add_argument("--include", action="append", default=[], metavar="GLOB",
                        help="only files whose path under SRC (or name) matches; repeatable")
    parser.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                        help="leave out files whose path under SRC (or name) matches; repeatable")
    parser.add_argument("--output-ext", metavar="EXT",
                        help="container of the outputs (default: the input's when writable, else .mkv)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be done, change nothing")
    parser.add_argument("--devices", metavar="LIST",
                        help="one worker per device: cuda:0,cuda:1 / cuda (all GPUs) / cpu / cpu,cpu "
                             "(default: every visible GPU, else the CPU)")
    parser.add_argument("--ray", metavar="ADDRESS",
                        help="run the workers as Ray actors: a cluster address, 'auto' (the running cluster), "
                             "or 'local' (start one on this machine)")
    parser.add_argument("--ray-workers", type=int, default=None, metavar="N",
                        help="number of Ray actors (default: one per GPU in the cluster, else 1 per 2 CPUs)")
    parser.add_argument("--segment-seconds", type=float, default=300.0, metavar="S",
                        help="process files longer than 1.5 x S in segments of about S seconds, so a killed "
                             "job resumes mid-file and one file spreads over devices (0: never; default 300)")
    parser.add_argument("--batch-size", type=int, default=4, metavar="N", help="frames per forward pass")
    parser.add_argument("--max-attempts", type=int, default=3, metavar="N",
                        help="tries per file for passing failures (out of memory, disk full; default 3)")
    parser.add_argument("--retry-backoff", type=float, default=5.0, metavar="S",
                        help="seconds before the first retry, doubled each time (default 5)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="also retry files that failed for a reason in the file itself")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace outputs that exist but were not made by this batch")
    parser.add_argument("--db", metavar="FILE",
                        help=f"job database (default DST/{STATE_DIR_NAME}/{DB_NAME}; keep it on a local disk)")
    parser.add_argument("--lease-seconds", type=float, default=DEFAULT_LEASE_SECONDS, metavar="S",
                        help="a worker silent this long on another machine is presumed dead (default 120)")
    parser.add_argument("--report", metavar="FILE", help="also write the report here (.json or .csv)")
    parser.add_argument("--quiet", action="store_true",
                        help="for cron: no progress or table; print only the files that failed or were "
                             "skipped, with their reasons")
    add_model_arguments(parser)
    add_encoder_arguments(parser)
    add_input_limit_arguments(parser)
    return parser


def print_dry_run(decisions: list[Decision]) -> None:
    labels = {"todo": "upscale", "redo": "redo (changed)", "resume": "resume", "up-to-date": "up to date",
              "skip": "skip", "fail": "fail"}
    for decision in decisions:
        source = decision.source
        detail = f" -> {printable(str(source.output))}" if decision.action in ("todo", "redo", "resume") else ""
        reason = f" ({printable(decision.reason)})" if decision.reason else ""
        print(f"{labels[decision.action]:<15} {printable(source.rel_path)}{detail}{reason}")
    counts: dict[str, int] = {}
    for decision in decisions:
        counts[labels[decision.action]] = counts.get(labels[decision.action], 0) + 1
    print("total: " + ", ".join(f"{count} {label}" for label, count in counts.items()) if counts else "no files")


def settings_from_arguments(args: argparse.Namespace) -> BatchSettings:
    return BatchSettings(include=tuple(args.include), exclude=tuple(args.exclude), output_ext=args.output_ext,
                         overwrite=args.overwrite, retry_failed=args.retry_failed, batch_size=args.batch_size,
                         segment_seconds=args.segment_seconds, max_attempts=args.max_attempts,
                         retry_backoff=args.retry_backoff, db_path=Path(args.db) if args.db else None,
                         lease_seconds=args.lease_seconds, quiet=args.quiet, max_pixels=args.max_pixels,
                         allow_partial=args.allow_partial)


def backend_from_arguments(args: argparse.Namespace) -> Backend:
    if args.ray:
        from vapsr_video.batch.ray_backend import RayBackend

        return RayBackend(args.ray, args.ray_workers)
    return LocalBackend(args.devices)


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    src, dst = Path(args.src), Path(args.dst)
    settings = settings_from_arguments(args)
    model = model_options_from_arguments(args)
    encode = encode_options_from_arguments(args)
    if args.dry_run:
        print_dry_run(plan_batch(src, dst, model, encode, settings))
        return 0
    report = run_batch(src, dst, model, encode, settings, backend_from_arguments(args))
    if args.report:
        report.write(args.report)
    emit_report(report, quiet=args.quiet)
    return report.exit_code


def emit_report(report: BatchReport, *, quiet: bool) -> None:
    if not quiet:
        print(report.table())
        return
    # cron mails whatever a job prints: say something only when something needs a look, and
    # then every file that was not done with its reason (a file failing on every run included).
    for entry in report.files:
        if entry.state in ("failed", "skipped", "pending", "running"):
            state = "unfinished" if entry.state in ("pending", "running") else entry.state
            print(f"{state} {printable(entry.path)}: {printable(entry.reason or 'not done yet')}", file=sys.stderr)
    if report.interrupted:
        print("interrupted: run the same command again to resume", file=sys.stderr)
