"""The one per-user cache folder: fetched weights (``weights/``) and compiled kernels (``kernels/``)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_DIR_ENV = "VAPSR_VIDEO_CACHE_DIR"


def cache_dir() -> Path:
    """``$VAPSR_VIDEO_CACHE_DIR``, else ``$XDG_CACHE_HOME/vapsr-video``, else ``~/.cache/vapsr-video``."""
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "vapsr-video"
