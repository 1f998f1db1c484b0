"""The VapSR network and its weights."""

from vapsr_video.model.vapsr import PUBLISHED_CONFIGS, VARIANTS, ModelConfig, VapSR, published_config

__all__ = ["PUBLISHED_CONFIGS", "VARIANTS", "ModelConfig", "VapSR", "published_config"]
