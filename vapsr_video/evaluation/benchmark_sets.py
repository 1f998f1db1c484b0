"""Finding the ground-truth images of the standard SR benchmark sets on disk.

A benchmark folder holds one folder per set, with the HR images either in ``HR/``
or directly inside. It is given with ``--data DIR``, or found in the data folder
named by the environment variable ``VAPSR_VIDEO_DATA``, laid out as::

    $VAPSR_VIDEO_DATA/benchmarks/Set5/HR/*.png     (Set14, B100, ...)
    $VAPSR_VIDEO_DATA/reference-results.json       (for ``vapsr-video eval --reference``)

The installed package carries no data of its own, so with neither the user is
told how to give it.
"""

from __future__ import annotations

import os
from pathlib import Path

from vapsr_video.errors import InputError, UsageError
from vapsr_video.imaging.image_files import IMAGE_SUFFIXES, is_image_path

STANDARD_SETS = ("Set5", "Set14", "B100")
DATA_ENV = "VAPSR_VIDEO_DATA"
BENCHMARKS_SUBFOLDER = "benchmarks"
REFERENCE_FILE = "reference-results.json"


def data_folder(what: str) -> Path:
    """The folder ``$VAPSR_VIDEO_DATA``; ``what`` (e.g. "pass --data DIR") says the other way when it is unset."""
    value = os.environ.get(DATA_ENV, "")
    if not value:
        raise UsageError(f"no data folder: {what}, or set {DATA_ENV} to a folder holding "
                         f"{BENCHMARKS_SUBFOLDER}/Set5/HR/*.png, ... and {REFERENCE_FILE}")
    return Path(value)


def benchmark_dir(data_dir: str | Path | None = None) -> Path:
    """``data_dir`` if given, else ``$VAPSR_VIDEO_DATA/benchmarks``."""
    if data_dir is not None:
        return Path(data_dir)
    return data_folder("pass --data DIR (a folder holding Set5/HR/*.png, Set14/HR/*.png, ...)") / BENCHMARKS_SUBFOLDER


def benchmark_images(set_name: str, data_dir: str | Path | None = None) -> list[Path]:
    """The HR images of ``set_name`` under ``data_dir`` (default: see :func:`benchmark_dir`), sorted by name."""
    root = benchmark_dir(data_dir)
    if not root.is_dir():
        raise InputError(
            f"{root}: no benchmark data folder; pass --data DIR (a folder holding Set5/HR/*.png, Set14/HR/*.png, ...)"
        )
    set_dir = root / set_name
    if not set_dir.is_dir():
        present = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise InputError(f"{set_dir}: no such benchmark set (found: {', '.join(present) or 'nothing'})")
    image_dir = set_dir / "HR" if (set_dir / "HR").is_dir() else set_dir
    images = sorted(p for p in image_dir.iterdir() if p.is_file() and is_image_path(p))
    if not images:
        raise InputError(f"{image_dir}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the {set_name} folder")
    return images
