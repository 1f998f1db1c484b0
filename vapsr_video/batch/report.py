"""The end-of-batch report: a table on the terminal, and JSON or CSV for machines.

It describes the state of every input of the batch (done, failed, skipped, and
anything left pending or running after an interruption), what this run did, and
totals: files, frames, processing time, frames/s and bytes in and out.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vapsr_video.batch.jobs_db import JobRow
from vapsr_video.batch.safety import printable
from vapsr_video.errors import ExitCode, OutputError


@dataclass(frozen=True)
class FileEntry:
    path: str
    output: str
    state: str
    reason: str | None
    attempts: int
    frames: int | None
    seconds: float | None
    input_bytes: int | None
    output_bytes: int | None
    this_run: bool


@dataclass
class BatchReport:
    source: str
    destination: str
    wall_seconds: float
    interrupted: bool
    files: list[FileEntry] = field(default_factory=list)
    stop_code: int = ExitCode.INTERRUPTED  # with ``interrupted``: 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP

    @classmethod
    def from_jobs(cls, jobs: list[JobRow], *, source: str, destination: str, run_id: int, wall_seconds: float,
                  interrupted: bool = False, stop_code: int = ExitCode.INTERRUPTED) -> BatchReport:
        entries = [
            FileEntry(job.rel_path, job.output, job.state, job.reason, job.attempts, job.frames, job.work_seconds,
                      job.input_bytes, job.output_bytes, job.run_id == run_id and job.state in ("done", "failed"))
            for job in jobs
        ]
        return cls(source, destination, wall_seconds, interrupted, entries, stop_code)

    def count(self, state: str) -> int:
        return sum(1 for entry in self.files if entry.state == state)

    @property
    def processed_this_run(self) -> list[FileEntry]:
        return [entry for entry in self.files if entry.this_run and entry.state == "done"]

    @property
    def totals(self) -> dict[str, float | int]:
        done = [entry for entry in self.files if entry.state == "done"]
        run = self.processed_this_run
        frames = sum(entry.frames or 0 for entry in run)
        seconds = sum(entry.seconds or 0.0 for entry in run)
        return {
            "files": len(self.files),
            "done": len(done),
            "failed": self.count("failed"),
            "skipped": self.count("skipped"),
            "unfinished": self.count("pending") + self.count("running"),
            "done_this_run": len(run),
            "failed_this_run": sum(1 for entry in self.files if entry.this_run and entry.state == "failed"),
            "frames_this_run": frames,
            "processing_seconds_this_run": round(seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
            "frames_per_second": round(frames / self.wall_seconds, 3) if self.wall_seconds > 0 else 0.0,
            "input_bytes_done": sum(entry.input_bytes or 0 for entry in done),
            "output_bytes_done": sum(entry.output_bytes or 0 for entry in done),
        }

    @property
    def exit_code(self) -> int:
        """0: everything done or skipped; 1: something failed; 130/143/129: stopped by Ctrl-C/SIGTERM/SIGHUP."""
        if self.interrupted:
            return self.stop_code
        return ExitCode.FAILED if self.count("failed") or self.count("pending") else ExitCode.OK

    def to_json(self) -> str:
        return json.dumps({"source": self.source, "destination": self.destination, "interrupted": self.interrupted,
                           "totals": self.totals, "files": [asdict(entry) for entry in self.files]},
                          indent=2, ensure_ascii=False)

    def to_csv(self) -> str:
        buffer = io.StringIO()
        names = list(FileEntry.__dataclass_fields__)
        writer = csv.DictWriter(buffer, fieldnames=names)
        writer.writeheader()
        for entry in self.files:
            writer.writerow(asdict(entry))
        return buffer.getvalue()

    def write(self, path: str | Path) -> None:
        """JSON unless the name ends in .csv."""
        target = Path(path)
        text = self.to_csv() if target.suffix.lower() == ".csv" else self.to_json()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"{target}: cannot write the report ({exc.strerror})") from None

    def table(self) -> str:
        """The human summary: notable files first (failed, skipped, unfinished), then totals."""
        lines: list[str] = []
        notable = [entry for entry in self.files if entry.state != "done"]
        if notable:
            width = min(60, max(len(printable(entry.path)) for entry in notable))
            lines.append(f"{'state':<8}  {'file':<{width}}  reason")
            for entry in sorted(notable, key=lambda e: ("failed", "pending", "running", "skipped").index(e.state)):
                lines.append(f"{entry.state:<8}  {printable(entry.path):<{width}}  {printable(entry.reason or '')}")
            lines.append("")
        t = self.totals
        lines.append(f"files: {t['files']}  done: {t['done']} ({t['done_this_run']} this run)  "
                     f"failed: {t['failed']}  skipped: {t['skipped']}  unfinished: {t['unfinished']}")
        lines.append(f"this run: {t['frames_this_run']} frames in {t['wall_seconds']:.1f} s "
                     f"({t['frames_per_second']:.2f} frames/s); "
                     f"output {_size(int(t['output_bytes_done']))} from input {_size(int(t['input_bytes_done']))}")
        if self.interrupted:
            lines.append("interrupted: run the same command again to resume")
        return "\n".join(lines)


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{count} B"
        value /= 1024
    return f"{count} B"
