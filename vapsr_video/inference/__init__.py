"""The inference core shared by every front end."""

from vapsr_video.inference.options import ModelOptions
from vapsr_video.inference.upscaler import Upscaler

__all__ = ["ModelOptions", "Upscaler"]
