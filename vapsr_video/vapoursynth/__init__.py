"""The VapourSynth filter: ``core.vapsr.Upscale`` (native plugin) and its pure-Python twin ``upscale``.

Importing this package does not import torch or vapoursynth; the names below
load their modules on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_plugin", "plugin_path", "upscale"]


def __getattr__(name: str) -> Any:
    if name == "upscale":
        from vapsr_video.vapoursynth.twin import upscale

        return upscale
    if name in ("plugin_path", "load_plugin"):
        from vapsr_video.vapoursynth import plugin

        return getattr(plugin, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
