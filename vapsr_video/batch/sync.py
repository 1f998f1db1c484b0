"""Reconciling the source tree with the job database before a run.

For each input: unchanged and done (output present) -> nothing to do; unchanged
and failed for a reason in the file itself -> stays failed (unless retrying is
asked for); new, changed (size, mtime, head/tail hash or options), failed on a
passing problem, or done but its output deleted -> to do. Only new and changed
files are probed, so a rerun over a large finished archive reads 128 KiB a file.

An output path that already holds a file is replaced only when that file is the
one this batch published there (its identity is in the job row) or with
``--overwrite``; otherwise the input is skipped with that reason, and
``--overwrite`` later redoes it. An output that would resolve outside DST or
onto a source fails the input before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vapsr_video.batch.discovery import SourceFile, fingerprint, probe
from vapsr_video.batch.jobs_db import JobRow, JobsDB, output_identity
from vapsr_video.batch.safety import OVERWRITE_HINT, output_problem, real
from vapsr_video.errors import InputError


@dataclass(frozen=True)
class Decision:
    source: SourceFile
    action: str  # "todo", "redo", "resume", "up-to-date", "skip", "fail"
    reason: str | None = None
    fingerprint: str = ""
    duration: float | None = None
    est_frames: int | None = None
    replace_identity: str | None = None  # what the output may replace when published (see JobRow)


def _replaceable(source: SourceFile, row: JobRow | None, overwrite: bool) -> tuple[bool, str | None]:
    """(may the output be written, what it may replace): nothing there, ``--overwrite``,
    or the very file this batch published there before."""
    present = output_identity(source.output)
    if present is None:
        return True, None
    if overwrite:
        return True, "*"
    if row is not None and row.output == str(source.output) and (
            row.output_identity == present or (row.output_identity is None and row.state == "done")):
        return True, present  # ours (a first-release database recorded no identity: a done job's output)
    return False, None


def decide(source: SourceFile, row: JobRow | None, options_digest: str, *, overwrite: bool,
           retry_failed: bool, taken_outputs: set[Path], dst: Path | None = None) -> Decision:
    if source.skip_reason is not None:
        return Decision(source, "skip", source.skip_reason, "?")
    if dst is not None and (problem := output_problem(source.output, dst, {real(source.path)})) is not None:
        return Decision(source, "fail", problem, "?")
    try:
        digest = fingerprint(source.path, options_digest)
    except InputError as exc:
        return Decision(source, "fail", str(exc))
    if source.output in taken_outputs:
        return Decision(source, "fail", f"its output {source.output} is also the output of another input; "
                                        "rename one or pass --output-ext", digest)
    taken_outputs.add(source.output)
    if row is not None and row.fingerprint == digest:
        if row.state == "done" and Path(row.output).is_file():
            return Decision(source, "up-to-date", None, digest)
        overwrite_resolves = overwrite and OVERWRITE_HINT in (row.reason or "")
        if (row.state == "skipped" and not overwrite) or (row.state == "failed" and row.permanent
                                                          and not retry_failed and not overwrite_resolves):
            return Decision(source, "skip" if row.state == "skipped" else "fail", row.reason, digest)
        if row.state in ("pending", "running"):
            return Decision(source, "resume", None, digest)
    found = probe(source.path)
    if found.kind == "skip":
        return Decision(source, "skip", found.reason, digest)
    if found.kind == "bad":
        return Decision(source, "fail", found.reason, digest)
    writable, replace = _replaceable(source, row, overwrite)
    if not writable:
        return Decision(source, "skip", f"its output already exists and is not from this batch; {OVERWRITE_HINT}",
                        digest)
    action = "todo" if row is None or row.state == "skipped" else "redo"
    return Decision(source, action, None, digest, found.duration, found.est_frames, replace)


def reconcile(db: JobsDB | None, sources: Iterable[SourceFile], options_digest: str, *, overwrite: bool = False,
              retry_failed: bool = False, record: bool = True, run_id: int | None = None,
              dst: Path | None = None) -> list[Decision]:
    """Decide what to do with every source; with ``record``, write it to ``db``. With ``dst``,
    an output that would resolve outside it (or onto a source) fails its input."""
    decisions: list[Decision] = []
    taken: set[Path] = set()
    for source in sources:
        row = db.job_by_path(source.rel_path) if db is not None else None
        decision = decide(source, row, options_digest, overwrite=overwrite, retry_failed=retry_failed,
                          taken_outputs=taken, dst=dst)
        decisions.append(decision)
        if not record or db is None or decision.action in ("up-to-date", "resume"):
            continue
        if row is not None and decision.action in ("skip", "fail") and row.fingerprint == decision.fingerprint \
                and row.state in ("skipped", "failed"):
            continue  # already recorded as such
        state = {"todo": "pending", "redo": "pending", "skip": "skipped", "fail": "failed"}[decision.action]
        db.upsert_discovered(rel_path=source.rel_path, source=str(source.path), output=str(source.output),
                             fingerprint=decision.fingerprint or "?", state=state, reason=decision.reason,
                             permanent=decision.action == "fail", input_bytes=source.size,
                             duration=decision.duration, est_frames=decision.est_frames, run_id=run_id,
                             replace_identity=decision.replace_identity)
    return decisions
