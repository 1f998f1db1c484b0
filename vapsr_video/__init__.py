"""vapsr-video: upscale video and images with the VapSR super-resolution network."""

from vapsr_video.inference.upscaler import Upscaler
from vapsr_video.model.weights import load_model

__all__ = ["Upscaler", "load_model"]
__version__ = "0.1.0"
