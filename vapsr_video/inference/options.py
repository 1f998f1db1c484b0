"""``ModelOptions``: the user's choice of model and how to run it, as one record.

Every front end (the CLI, the VapourSynth filter, the batch runner and its Ray
actors) turns its arguments into a :class:`ModelOptions` and calls
:meth:`ModelOptions.build` on the device it owns. The record is frozen and
picklable, so a Ray actor receives exactly what the driver parsed, and
:meth:`ModelOptions.digest` names the options that shape the output (the
device does not), so a batch can tell whether a finished file must be redone.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from vapsr_video.choices import ENGINES
from vapsr_video.errors import UsageError
from vapsr_video.inference.upscaler import DEFAULT_OVERLAP, Upscaler
from vapsr_video.model.catalog import resolve_weights
from vapsr_video.model.weights import WEIGHTS_ENV, default_weights_path


@dataclass(frozen=True)
class ModelOptions:
    """Which network, which weights, and how to run them.

    Args:
        weights: a checkpoint file (``.pth`` or ``.safetensors``); ``None``: the
            bundled weights for ``variant`` and ``scale``.
        variant: ``"vapsr"`` or ``"vapsr-s"`` (ignored when ``weights`` is given:
            the file says which).
        scale: 2, 3 or 4; ``None``: 2, or the scale of ``weights``.
        precision: ``"fp16"``, ``"bf16"``, ``"fp32"``; ``None``: the device's default.
        tile, tile_overlap: tiled inference, as :class:`Upscaler` takes them.
        device: where :meth:`build` runs the model unless told otherwise
            (``None``: CUDA when present). Not part of :meth:`digest`.
        engine: ``"eager"``, ``"compile"`` (``torch.compile``, static shapes) or
            ``"cuda-graphs"`` (CUDA only); see :mod:`vapsr_video.inference.engines`.
    """

    weights: str | None = None
    variant: str = "vapsr"
    scale: int | None = None
    precision: str | None = None
    tile: int = 0
    tile_overlap: int = DEFAULT_OVERLAP
    device: str | None = None
    engine: str = "eager"

    def __post_init__(self) -> None:
        # One spelling per choice, so that equal options compare (and pickle) equal.
        if isinstance(self.weights, Path):
            object.__setattr__(self, "weights", str(self.weights))
        if isinstance(self.device, torch.device):
            object.__setattr__(self, "device", str(self.device))
        if self.engine not in ENGINES:
            raise UsageError(f"unknown engine {self.engine!r}; choose from {', '.join(ENGINES)}")

    def build(self, device: str | torch.device | None = None) -> Upscaler:
        """Load the model and return an :class:`Upscaler` on ``device`` (default: :attr:`device`)."""
        return Upscaler(weights=self.weights, variant=self.variant, scale=self.scale,
                        device=self.device if device is None else device, precision=self.precision,
                        tile=self.tile, tile_overlap=self.tile_overlap, engine=self.engine)

    def identity(self) -> dict[str, Any]:
        """The options that shape the output, as plain JSON values (the device is not one).

        The key names are those batch job databases have always been fingerprinted
        with, so upgrading does not make a finished archive look changed.
        """
        chosen: dict[str, Any] = {
            "model": self.variant, "scale": self.scale,
            "weights": _weights_identity(self.weights, self.variant, self.scale),
            "precision": self.precision, "tile": self.tile, "tile_overlap": self.tile_overlap,
        }
        if self.engine != "eager":
            chosen["engine"] = self.engine  # absent for eager, so existing fingerprints stay valid
        return chosen

    def with_weights_pinned(self) -> ModelOptions:
        """These options with ``weights`` turned into the file it means now (a known name,
        or ``$VAPSR_VIDEO_WEIGHTS`` when no weights were given), so that workers in other
        processes or on other machines load exactly what this process chose."""
        if self.weights is None and not os.environ.get(WEIGHTS_ENV, "").strip():
            return self  # the bundled weights: the same file in every installation of this version
        path = default_weights_path(self.variant, self.scale) if self.weights is None \
            else resolve_weights(self.weights)
        return replace(self, weights=str(path))

    def digest(self) -> str:
        """A short, stable hash of :meth:`identity`: equal in every process for equal options."""
        return stable_digest(self.identity())


def stable_digest(values: dict[str, Any]) -> str:
    """16 hex digits of SHA-256 over ``values`` as sorted JSON (not Python's per-process ``hash``)."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _weights_identity(weights: str | None, variant: str, scale: int | None) -> list[Any] | None:
    """What identifies a weights file: its resolved path, size and modification time,
    so replacing the file in place counts as a change. A known model name and the
    ``$VAPSR_VIDEO_WEIGHTS`` default count as the file they resolve to."""
    if weights is None:
        if not os.environ.get(WEIGHTS_ENV, "").strip():
            return None  # the bundled weights (kept as None: fingerprints of existing jobs stay valid)
        path = default_weights_path(variant, scale)
    else:
        path = resolve_weights(weights)
    stat = path.stat() if path.exists() else None
    return [str(path.resolve()), stat.st_size if stat else None, stat.st_mtime_ns if stat else None]
