"""Removing what finished or abandoned jobs left in the work folder."""

from __future__ import annotations

import contextlib
import shutil

from vapsr_video.batch.jobs_db import JobsDB
from vapsr_video.batch.tasks import PUBLISHED_NOTE, UnitSettings


def remove_finished_work(db: JobsDB, settings: UnitSettings) -> None:
    """Delete the work folders of jobs that are not under way (done, failed, or gone
    from the database); a running or resumable segmented job keeps its segments, and a
    pending job the note of an output it published but did not record."""
    root = settings.work_root
    if not root.is_dir():
        return
    jobs = db.jobs()
    keep = {str(job.id) for job in jobs if job.state in ("pending", "running") and job.segmented}
    keep |= {str(job.id) for job in jobs if job.state == "running"}
    # A job interrupted between publishing its output and recording it: its note lets the next run
    # recognise that output as this batch's instead of refusing it as a file that appeared.
    keep |= {str(job.id) for job in jobs
             if job.state == "pending" and (settings.work_dir(job.id) / PUBLISHED_NOTE).is_file()}
    for folder in root.iterdir():
        if folder.name not in keep:
            shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        root.rmdir()  # only when empty
