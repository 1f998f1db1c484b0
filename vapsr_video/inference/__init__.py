"""The inference core shared by every front end."""

from vapsr_video.inference.engines import ENGINES
from vapsr_video.inference.options import ModelOptions
from vapsr_video.inference.precision import precision_warning
from vapsr_video.inference.upscaler import Upscaler

__all__ = ["ENGINES", "ModelOptions", "Upscaler", "precision_warning"]
