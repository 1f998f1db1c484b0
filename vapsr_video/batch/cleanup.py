"""Removing what finished or abandoned jobs left in the work folder."""

from __future__ import annotations

import contextlib
import shutil

from vapsr_video.batch.jobs_db import JobsDB
from vapsr_video.batch.tasks import UnitSettings


def remove_finished_work(db: JobsDB, settings: UnitSettings) -> None:
    """Delete the work folders of jobs that are not under way (done, failed, or gone
    from the database); a running or resumable segmented job keeps its segments."""
    root = settings.work_root
    if not root.is_dir():
        return
    keep = {str(job.id) for job in db.jobs() if job.state in ("pending", "running") and job.segmented}
    keep |= {str(job.id) for job in db.jobs() if job.state == "running"}
    for folder in root.iterdir():
        if folder.name not in keep:
            shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        root.rmdir()  # only when empty
