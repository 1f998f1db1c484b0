"""vapsr-video: upscale video and images with the VapSR super-resolution network.

``Upscaler`` and ``load_model`` are loaded on first use, so that importing the
package (as ``vapsr-video --help`` and ``--version`` do) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vapsr_video.inference.upscaler import Upscaler
    from vapsr_video.model.weights import load_model

__all__ = ["Upscaler", "load_model"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "Upscaler":
        from vapsr_video.inference.upscaler import Upscaler

        return Upscaler
    if name == "load_model":
        from vapsr_video.model.weights import load_model

        return load_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
