"""``vapsr-video batch SRC DST``: upscale every video under SRC into the same tree under DST.

Resumable: the job database in ``DST/.vapsr-batch/`` remembers what is done, so
running the same command again after a crash, a reboot or Ctrl-C carries on
where it stopped and never redoes a finished file. Exit codes: 0 everything
done (or skipped), 1 at least one file failed, 2 bad options, 130 interrupted;
see docs/batch.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from vapsr_video.batch.discovery import STATE_DIR_NAME, walk_sources
from vapsr_video.batch.jobs_db import DEFAULT_LEASE_SECONDS, JobsDB
from vapsr_video.batch.progress import BatchProgress
from vapsr_video.batch.report import BatchReport
from vapsr_video.batch.sync import Decision, reconcile
from vapsr_video.batch.tasks import BatchSettings
from vapsr_video.batch.workers import RetryPolicy, parse_devices, run_local, share_cpu_threads
from vapsr_video.cli.options import add_model_arguments
from vapsr_video.cli.upscale import add_encoder_arguments, encode_options_from_arguments
from vapsr_video.errors import InputError, UsageError

log = logging.getLogger("vapsr_video.batch")

DB_NAME = "jobs.sqlite"
LOG_NAME = "batch.log"
LAST_REPORT_NAME = "last-report.json"


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
                        help="for cron: no progress; print only failures")
    add_model_arguments(parser)
    add_encoder_arguments(parser)
    return parser


def options_digest(args: argparse.Namespace) -> str:
    """A short hash of every option that changes the output: changing one redoes the files."""
    weights = None
    if args.weights:
        path = Path(args.weights)
        stat = path.stat() if path.exists() else None
        weights = [str(path.resolve()), stat.st_size if stat else None, stat.st_mtime_ns if stat else None]
    encode = encode_options_from_arguments(args)
    chosen = {
        "model": args.model, "scale": args.scale, "weights": weights, "precision": args.precision,
        "tile": args.tile, "tile_overlap": args.tile_overlap, "output_ext": args.output_ext,
        "encode": {key: value for key, value in vars(encode).items()},
    }
    return hashlib.sha256(json.dumps(chosen, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_folders(src: Path, dst: Path) -> None:
    if not src.is_dir():
        raise InputError(f"{src}: not a folder")
    if dst.exists() and not dst.is_dir():
        raise UsageError(f"{dst}: exists and is not a folder")
    if src.resolve() == dst.resolve():
        raise UsageError(f"{dst}: DST must differ from SRC (inputs are never written)")


def print_dry_run(decisions: list[Decision]) -> None:
    labels = {"todo": "upscale", "redo": "redo (changed)", "resume": "resume", "up-to-date": "up to date",
              "skip": "skip", "fail": "fail"}
    for decision in decisions:
        source = decision.source
        detail = f" -> {source.output}" if decision.action in ("todo", "redo", "resume") else ""
        reason = f" ({decision.reason})" if decision.reason else ""
        print(f"{labels[decision.action]:<15} {source.rel_path}{detail}{reason}")
    counts: dict[str, int] = {}
    for decision in decisions:
        counts[labels[decision.action]] = counts.get(labels[decision.action], 0) + 1
    print("total: " + ", ".join(f"{count} {label}" for label, count in counts.items()) if counts else "no files")


def setup_log_file(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s pid %(process)d %(threadName)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return handler


def _sigterm_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # a service stop is handled like Ctrl-C: clean stop, resumable


def load_upscalers(args: argparse.Namespace, devices: list[str]) -> dict[str, object]:
    """One model per worker, loaded once, before any file is touched (a bad --weights fails fast)."""
    from vapsr_video.inference.upscaler import Upscaler

    share_cpu_threads(devices)
    return {
        f"w{index}@{device}": Upscaler(weights=args.weights, variant=args.model, scale=args.scale, device=device,
                                       precision=args.precision, tile=args.tile, tile_overlap=args.tile_overlap)
        for index, device in enumerate(devices, start=1)
    }


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    src, dst = Path(args.src), Path(args.dst)
    check_folders(src, dst)
    if args.max_attempts < 1:
        raise UsageError("--max-attempts must be at least 1")
    encode = encode_options_from_arguments(args)
    digest = options_digest(args)
    state_dir = dst / STATE_DIR_NAME
    db_path = Path(args.db) if args.db else state_dir / DB_NAME
    sources = walk_sources(src, dst, include=args.include, exclude=args.exclude, output_extension=args.output_ext)

    if args.dry_run:
        db = JobsDB(db_path, readonly=True) if db_path.exists() else None
        try:
            print_dry_run(reconcile(db, sources, digest, overwrite=args.overwrite, retry_failed=args.retry_failed,
                                    record=False))
        finally:
            if db is not None:
                db.close()
        return 0

    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{dst}: cannot create the destination ({exc.strerror})") from None
    log_handler = setup_log_file(state_dir / LOG_NAME)
    previous_sigterm = signal.signal(signal.SIGTERM, _sigterm_as_interrupt) \
        if sys.platform != "win32" and _in_main_thread() else None
    started = time.perf_counter()
    db = JobsDB(db_path, lease_seconds=args.lease_seconds)
    run_id = db.start_run()
    interrupted = False
    try:
        log.info("batch run %d: %s -> %s (pid %s)", run_id, src, dst, os.getpid())
        decisions = reconcile(db, sources, digest, overwrite=args.overwrite, retry_failed=args.retry_failed,
                              run_id=run_id)
        settings = BatchSettings(dst=dst, encode=encode, batch_size=args.batch_size,
                                 segment_seconds=args.segment_seconds, state_dir=state_dir)
        policy = RetryPolicy(max_attempts=args.max_attempts, backoff_seconds=args.retry_backoff)
        wanted = {decision.source.rel_path for decision in decisions}
        todo = [job for job in db.jobs() if job.rel_path in wanted and job.state in ("pending", "running")]
        try:
            if todo:
                run_workers(args, db_path, settings, policy, run_id, todo)
        except KeyboardInterrupt:
            interrupted = True
        from vapsr_video.batch.cleanup import remove_finished_work

        remove_finished_work(db, settings)
        jobs = [job for job in db.jobs() if job.rel_path in wanted]
        report = BatchReport.from_jobs(jobs, source=str(src), destination=str(dst), run_id=run_id,
                                       wall_seconds=time.perf_counter() - started, interrupted=interrupted)
        report.write(state_dir / LAST_REPORT_NAME)
        if args.report:
            report.write(args.report)
        db.finish_run(run_id, "interrupted" if interrupted else ("failed" if report.exit_code else "ok"))
        emit_report(report, quiet=args.quiet)
        log.info("batch run %d finished: %s", run_id, json.dumps(report.totals))
        return report.exit_code
    finally:
        db.close()
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
        logging.getLogger().removeHandler(log_handler)
        log_handler.close()


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def run_workers(args: argparse.Namespace, db_path: Path, settings: BatchSettings, policy: RetryPolicy, run_id: int,
                todo: list) -> None:
    total_frames = sum(job.est_frames or 0 for job in todo)
    if args.ray:
        from vapsr_video.batch.ray_backend import run_ray

        run_ray(args, db_path=db_path, settings=settings, policy=policy, run_id=run_id, todo=todo)
        return
    devices = parse_devices(args.devices, args.device)
    upscalers = load_upscalers(args, devices)
    ui = BatchProgress(total_frames=total_frames, total_files=len(todo), workers=list(upscalers), quiet=args.quiet)
    try:
        run_local(upscalers, db_path=db_path, settings=settings, policy=policy, run_id=run_id, ui=ui,
                  lease_seconds=args.lease_seconds)
    finally:
        ui.close()


def emit_report(report: BatchReport, *, quiet: bool) -> None:
    if not quiet:
        print(report.table())
        return
    # cron mails whatever a job prints: say something only when something needs a look.
    for entry in report.files:
        if entry.state == "failed" and entry.this_run:
            print(f"failed {entry.path}: {entry.reason}", file=sys.stderr)
    if report.interrupted:
        print("interrupted: run the same command again to resume", file=sys.stderr)
