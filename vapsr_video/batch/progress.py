"""Progress of a batch on the terminal: one bar for the whole batch (frames, files,
ETA) and one line per worker (what it is doing, its frames). Quiet mode draws nothing."""

from __future__ import annotations

import sys
import threading

from tqdm import tqdm


class BatchProgress:
    def __init__(self, *, total_frames: int, total_files: int, workers: list[str], quiet: bool = False) -> None:
        self.quiet = quiet
        self._lock = threading.Lock()
        self._files_done = 0
        self._total_files = total_files
        self._overall: tqdm | None = None
        self._bars: dict[str, tqdm] = {}
        if quiet:
            return
        self._overall = tqdm(total=total_frames or None, unit="frame", desc="batch", position=0, dynamic_ncols=True,
                             file=sys.stderr, smoothing=0.05)
        self._overall.set_postfix_str(self._files_text())
        for position, name in enumerate(workers, start=1):
            self._bars[name] = tqdm(total=None, unit="frame", desc=f"{name}: idle", position=position,
                                    dynamic_ncols=True, leave=False, file=sys.stderr)

    def _files_text(self) -> str:
        return f"files {self._files_done}/{self._total_files}"

    def started(self, worker: str, what: str, total_frames: int | None) -> None:
        with self._lock:
            bar = self._bars.get(worker)
            if bar is not None:
                bar.reset()
                bar.total = total_frames or None  # reset() keeps the old total when given None
                bar.set_description_str(f"{worker}: {what}", refresh=True)

    def frames(self, worker: str, count: int) -> None:
        with self._lock:
            bar = self._bars.get(worker)
            if bar is not None:
                bar.update(count)
            if self._overall is not None:
                self._overall.update(count)

    def add_frames_total(self, extra: int) -> None:
        """A file turned out longer or shorter than its container said."""
        with self._lock:
            if self._overall is not None and self._overall.total is not None and extra:
                self._overall.total = max(self._overall.n, self._overall.total + extra)
                self._overall.refresh()

    def file_finished(self) -> None:
        with self._lock:
            self._files_done += 1
            if self._overall is not None:
                self._overall.set_postfix_str(self._files_text(), refresh=True)

    def idle(self, worker: str) -> None:
        with self._lock:
            bar = self._bars.get(worker)
            if bar is not None:
                bar.set_description_str(f"{worker}: idle", refresh=True)

    def close(self) -> None:
        with self._lock:
            for bar in self._bars.values():
                bar.close()
            if self._overall is not None:
                self._overall.close()
